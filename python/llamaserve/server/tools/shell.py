"""exec_shell_command (`sh -c`, stdout and stderr together, bounded in time and size, streamed
as it runs when asked) and get_info. Asyncio subprocesses: nothing blocks the event loop, and a
command is killed with its whole process group on timeout or when the client goes away."""
from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import platform
import signal
from collections.abc import AsyncIterator
from typing import Any

from llamaserve.server.tools.params import child_env, integer, string

DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 60  # seconds
MAX_OUTPUT = 16 * 1024  # bytes kept
EXIT_GRACE = 0.2  # seconds to read what is left once the shell exited (a background child may hold the pipe)


class ShellError(Exception):
    pass


async def run_command(argv: list[str], cwd: str | None, timeout: float, max_output: int) -> AsyncIterator[str]:
    """Yields the output as it comes, then one last piece: "\\n[exit code: N]" (and a note when it timed out)."""
    if cwd is not None and not os.path.isdir(cwd):
        raise ShellError(f"working directory does not exist: {cwd}")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=child_env())
    except OSError as exc:
        raise ShellError(f"failed to spawn process: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    exited = asyncio.ensure_future(proc.wait())
    kept, timed_out, truncated = 0, False, False
    try:
        while True:
            remaining = deadline - loop.time()
            if exited.done():
                remaining = min(remaining, EXIT_GRACE)
            read = asyncio.ensure_future(proc.stdout.read(4096))
            done, _ = await asyncio.wait({read} if exited.done() else {read, exited},
                                         timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
                if exited in done:
                    continue  # the shell just exited: read what is left, within the grace
                timed_out = not exited.done()  # else the grace is over: a background child holds the pipe
                break
            chunk = read.result()
            if not chunk:
                break
            if kept >= max_output:
                truncated = True
                continue
            if len(chunk) > max_output - kept:
                truncated = True
                chunk = chunk[:max_output - kept]
            kept += len(chunk)
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # its background children too
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 2.0)
    code = proc.returncode if proc.returncode is not None else -1
    end = ("\n[output truncated]" if truncated else "") + f"\n[exit code: {code}]"
    if timed_out:
        end += " [exit due to timed out]"
    yield end


def exec_stream(params: dict[str, Any]) -> AsyncIterator[str]:
    command = string(params, "command")
    timeout = min(max(1, integer(params, "timeout", DEFAULT_TIMEOUT)), MAX_TIMEOUT)
    max_output = min(max(1, integer(params, "max_output_size", MAX_OUTPUT)), MAX_OUTPUT)
    return run_command(["sh", "-c", command], params.get("cwd") or None, timeout, max_output)


async def exec_shell_command(params: dict[str, Any]) -> dict[str, Any]:
    try:
        pieces = [piece async for piece in exec_stream(params)]
    except ShellError as exc:
        return {"error": str(exc)}
    return {"plain_text_response": "".join(pieces)}


async def get_info(params: dict[str, Any]) -> dict[str, Any]:
    uname = platform.uname()
    os_info = " ".join(part for part in (uname.system, uname.node, uname.release, uname.version, uname.machine) if part)
    return {"os": os_info or "unknown", "cwd": params.get("cwd") or os.getcwd()}
