"""Open a model file in a child process before the server opens it.

llama.cpp asserts on some damaged headers (an expert count below the experts used, ...) and an
assert aborts the whole process: a server that opened such a file in-process would die with
every request it was serving. So a file is first loaded by a child (probe_child.py) that builds
the model and a tiny context and decodes one token. A crash there, or llama.cpp's refusal,
refuses the file (ModelFileError: 422 MODEL_FILE_INVALID) with the signal and llama.cpp's last
log line; the server never opens it. Verdicts are kept by file identity (verdicts.py), so each
file is probed once (a refusal, once per process). On the default model a probe costs about a third of a second."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from llamaserve.models.errors import ModelFileError, ModelProbeFailed
from llamaserve.models.probe_child import REFUSED
from llamaserve.models.verdicts import Verdict, VerdictStore

log = logging.getLogger("llamaserve.models")

# What a damaged file can make llama.cpp do; SIGKILL (the OOM killer, most likely) is not one.
CRASH_SIGNALS = frozenset({signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGILL, signal.SIGTRAP})
_GENERIC = ("failed to load model",)  # llama.cpp's last line says no more than that it failed
_SOURCE_PATH = re.compile(r"^\S*/([^/\s]+:\d+: )")  # a build path before "file.cpp:123: "


def last_log_line(stderr: str) -> str:
    """llama.cpp's last line that says why: the assert, or the loader's error."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if line and not line.endswith(_GENERIC):
            return _SOURCE_PATH.sub(r"\1", line)[:500]
    return ""


class FileProbe:
    """Probes files once each (a second caller for the same file waits for the first)."""

    def __init__(self, verdicts: VerdictStore, timeout: float) -> None:
        self.verdicts = verdicts
        self.timeout = timeout  # seconds a probe may take; 0: files are not probed
        self.runs = 0  # child processes started (the log and tests read it)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def known(self, path: Path) -> Verdict | None:
        return self.verdicts.get(path)

    def check(self, path: Path) -> None:
        """Return when `path` is safe to open in-process; ModelFileError when llama.cpp
        crashes on it or refuses it, ModelProbeFailed when the probe could not tell."""
        if self.timeout <= 0:
            return
        with self._guard:
            lock = self._locks.setdefault(str(path.absolute()), threading.Lock())
        with lock:
            verdict = self.verdicts.get(path)
            if verdict is None:
                self.runs += 1
                verdict = probe(path, self.timeout)
                # a refusal may have been the machine's (out of memory): not kept past this process
                self.verdicts.put(path, verdict, lasting=verdict.ok or verdict.crashed)
                log.info("probed %s in %.2fs: %s", path.name, verdict.seconds,
                         "ok" if verdict.ok else verdict.reason)
        if not verdict.ok:
            raise ModelFileError(f"model file {path.name}: {verdict.reason}", verdict.detail)


def probe(path: Path, timeout: float) -> Verdict:
    """Load `path` in a child process and judge the file by how the child ended."""
    started = time.perf_counter()
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # ggml would attach a debugger for a backtrace
    try:
        done = subprocess.run([sys.executable, "-m", "llamaserve.models.probe_child", str(path)],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ModelProbeFailed(f"model file {path.name}: the load probe did not finish in {timeout:g}s",
                               "raise --probe-timeout for large files on slow disks") from None
    except OSError as exc:
        raise ModelProbeFailed(f"model file {path.name}: the load probe could not start", str(exc)) from None
    seconds = round(time.perf_counter() - started, 3)
    stderr = done.stderr.decode(errors="replace").replace(str(path), path.name)
    line = last_log_line(stderr)
    if done.returncode == 0:
        return Verdict(ok=True, seconds=seconds)
    if done.returncode == REFUSED:
        return Verdict(ok=False, reason="llama.cpp cannot load it", detail=line or _child_error(done.stdout, path),
                       seconds=seconds)
    if -done.returncode in CRASH_SIGNALS:
        name = signal.Signals(-done.returncode).name
        return Verdict(ok=False, reason=f"llama.cpp crashed ({name}) while loading it", detail=line,
                       seconds=seconds, crashed=True)
    # Killed (out of memory?) or a broken installation: not the file's fault, not kept.
    raise ModelProbeFailed(f"model file {path.name}: the load probe ended with status {done.returncode}",
                           line or "see the server log")


def _child_error(stdout: bytes, path: Path) -> str:
    try:
        return str(json.loads(stdout.decode().strip().splitlines()[-1])["error"]).replace(str(path), path.name)
    except (ValueError, IndexError, KeyError, TypeError):
        return ""
