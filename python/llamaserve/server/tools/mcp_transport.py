"""One MCP server process over stdio: newline-delimited JSON-RPC on its stdin and stdout,
handed to the MCP SDK's ClientSession as the pair of streams it reads and writes.

Own transport rather than the SDK's stdio_client: stdio_client closes stdin and waits up to
2 s, then up to 2 s more after SIGTERM, before it kills a server; a server that is busy (a slow
tool call) would hold our shutdown that long. Here close() kills the process group at once
(the server and any grandchild it left holding the pipes) and cancels the pipe tasks instead of
waiting for an EOF a grandchild may never let come."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import anyio
from mcp import types
from mcp.shared.message import SessionMessage

from llamaserve.server.tools.params import child_env

log = logging.getLogger("llamaserve.tools")

MAX_LINE = 16 * 1024 * 1024  # one JSON-RPC message (a long tools/list)


class StdioProcess:
    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.eof = False
        self._to_session, self.read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](64)
        self.write_stream, self._from_session = anyio.create_memory_object_stream[SessionMessage](64)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    @classmethod
    async def spawn(cls, name: str, command: str, args: tuple[str, ...], env: dict[str, str],
                    cwd: str | None) -> StdioProcess:
        """Start the server (OSError if it cannot be started)."""
        proc = await asyncio.create_subprocess_exec(
            command, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            env=child_env(env), cwd=cwd, start_new_session=True, limit=MAX_LINE)
        return cls(name, proc)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.eof

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                try:
                    line = await self.proc.stdout.readline()
                except ValueError:  # a line longer than MAX_LINE: drop what is buffered and go on
                    log.warning("MCP %r: message over %d bytes skipped", self.name, MAX_LINE)
                    continue
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    log.debug("MCP %r: skipped a line that is no JSON-RPC message", self.name)
                    continue
                await self._to_session.send(SessionMessage(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            pass
        finally:
            self.eof = True
            self._to_session.close()  # the session fails what it still waits for: connection closed

    async def _write(self) -> None:
        assert self.proc.stdin is not None
        try:
            async for message in self._from_session:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                self.proc.stdin.write(data.encode())
                await self.proc.stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError, OSError):
            self._to_session.close()

    async def close(self) -> None:
        """Kill the server's process group now and end the pipe tasks; never waits for EOF."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group outlives its leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in (self._to_session, self.read_stream, self.write_stream, self._from_session):
            stream.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2.0)
