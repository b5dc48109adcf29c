"""What the load probe (probe.py) found about a model file, kept by the file's identity so
that a file is probed once: its path, size, modification time, inode and device, and the
build of the native engine that probed it (a rebuilt llama.cpp may judge differently).

The lasting verdicts (the file loads; llama.cpp crashed on it) persist in one small JSON file
under the llamaserve cache folder (probes.json), so a server restart does not probe its files
again; at most MAX_KEPT are kept, the oldest dropped first. A refusal may have been the
machine's (memory), so it lasts as long as the process. Unreadable or foreign content is
ignored, never an error."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("llamaserve.models")

MAX_KEPT = 512  # verdicts remembered; each is about 300 bytes


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # what went wrong, in a sentence ("llama.cpp aborted (SIGABRT) ...")
    detail: str = ""  # llama.cpp's own last word on it (its log line)
    seconds: float = 0.0  # what the probe cost
    crashed: bool = False  # llama.cpp took the process down (not merely refused the file)


@functools.lru_cache(maxsize=1)
def _native_build() -> str:
    """Which compiled engine judged: its extension file's size and time."""
    try:
        import llamaserve._native as native

        st = os.stat(native.__file__)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except (ImportError, OSError):
        return "unknown"


def file_identity(path: Path) -> str | None:
    """The key of a file's verdict; None when the file cannot be read."""
    try:
        real = path.resolve()
        st = real.stat()
    except OSError:
        return None
    text = f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_dev}|{_native_build()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class VerdictStore:
    """Verdicts by file identity, in memory and (when `file` is given) on disk."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._verdicts: dict[str, dict] = self._read()
        self._passing: set[str] = set()  # keys kept in memory only

    def _read(self) -> dict[str, dict]:
        if self.file is None:
            return {}
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def get(self, path: Path) -> Verdict | None:
        key = file_identity(path)
        with self._lock:
            found = self._verdicts.get(key) if key else None
        if found is None:
            return None
        try:
            return Verdict(ok=bool(found["ok"]), reason=str(found.get("reason", "")),
                           detail=str(found.get("detail", "")), seconds=float(found.get("seconds", 0)),
                           crashed=bool(found.get("crashed", False)))
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, path: Path, verdict: Verdict, *, lasting: bool = True) -> None:
        key = file_identity(path)
        if key is None:
            return
        with self._lock:
            self._verdicts[key] = {**asdict(verdict), "file": path.name, "at": time.time()}
            if not lasting:
                self._passing.add(key)
                return
            self._passing.discard(key)
            # another process (a second server, a Ray replica) may have written since
            self._verdicts = {**self._read(), **self._verdicts}
            if len(self._verdicts) > MAX_KEPT:
                oldest = sorted(self._verdicts, key=lambda k: self._verdicts[k].get("at", 0))
                for k in oldest[:len(self._verdicts) - MAX_KEPT]:
                    del self._verdicts[k]
                    self._passing.discard(k)
            snapshot = json.dumps({k: v for k, v in self._verdicts.items() if k not in self._passing})
        self._write(snapshot)

    def _write(self, text: str) -> None:
        if self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(text)
            os.replace(tmp, self.file)  # readers never see half a file
        except OSError as exc:  # a read-only cache only costs probing again next start
            log.warning("cannot save probe verdicts to %s: %s", self.file, exc)
