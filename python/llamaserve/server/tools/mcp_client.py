"""The MCP servers: each spawned once at startup to list its tools (the warmup), then spawned
again on the first call of one of its tools and kept for the next ones; a server that died is
spawned again on the next call, one that cannot start is left alone for a few seconds. Calls
are MCP tools/call requests through the SDK's ClientSession, bounded by the server's timeout_ms;
a failure is a result {"error": ...}, never an exception that reaches the route."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from llamaserve.server.tools.mcp_config import McpServerSpec

log = logging.getLogger("llamaserve.tools")

WARMUP_TIMEOUT = 10.0  # seconds one server may take to start and list its tools
COOLDOWN = 2.0  # seconds a server that failed to start is not tried again
MAX_PAGES = 100  # tools/list pages read


@dataclass(frozen=True)
class McpToolDef:
    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


class _Connection:
    """A running server and its initialized ClientSession. The session's context lives in a task
    of its own (anyio needs it entered and left in one task); calls come from any task."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.session: Any = None
        self.process: Any = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"mcp-{spec.name}")

    @classmethod
    async def open(cls, spec: McpServerSpec, timeout: float) -> _Connection:
        conn = cls(spec)
        try:
            await asyncio.wait_for(asyncio.shield(conn._ready), timeout)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run(self) -> None:
        from mcp import ClientSession

        from llamaserve.server.tools.mcp_transport import StdioProcess

        spec = self.spec
        try:
            self.process = await StdioProcess.spawn(spec.name, spec.command, spec.args, spec.env, spec.cwd)
            async with ClientSession(self.process.read_stream, self.process.write_stream) as session:
                await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            if self.process is not None:
                await self.process.close()

    @property
    def alive(self) -> bool:
        return not self._task.done() and self.process is not None and self.process.alive

    async def close(self) -> None:
        self._closing.set()
        if self.process is not None:
            await self.process.close()  # kills the server: calls in flight end now
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), 3.0)
        if not self._task.done():
            self._task.cancel()
        if not self._ready.done():
            self._ready.cancel()
        elif not self._ready.cancelled():
            self._ready.exception()  # retrieved: a failed start was already reported


def _message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        return str(error.message)
    return str(exc) or type(exc).__name__


class McpServer:
    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._stopping = False

    async def list_tools(self) -> list[McpToolDef]:
        """The warmup: spawn, list, stop. Raises what went wrong."""
        conn = await _Connection.open(self.spec, WARMUP_TIMEOUT)
        try:
            tools, cursor = [], None
            for _ in range(MAX_PAGES):
                from mcp import types

                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await asyncio.wait_for(conn.session.list_tools(params=params), WARMUP_TIMEOUT)
                tools += [McpToolDef(self.spec.name, t.name, t.description or "",
                                     dict(t.input_schema) if isinstance(t.input_schema, dict) else {})
                          for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools
        finally:
            await conn.close()

    async def _connection(self) -> _Connection | None:
        async with self._lock:
            if self._stopping:
                return None
            if self._conn is not None and self._conn.alive:
                return self._conn
            if self._conn is not None:
                log.warning("MCP server %r is no longer running, starting it again", self.spec.name)
                await self._conn.close()
                self._conn = None
            if time.monotonic() < self._retry_at:
                return None
            try:
                # starting (the interpreter, the SDK's imports) may take longer than a call may
                self._conn = await _Connection.open(self.spec, max(self.spec.timeout_ms / 1000, WARMUP_TIMEOUT))
            except Exception as exc:  # a bad command, a server that dies or hangs at initialize
                log.warning("MCP server %r failed to start: %s", self.spec.name, _message(exc))
                self._retry_at = time.monotonic() + COOLDOWN
                return None
            return self._conn

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        conn = await self._connection()
        if conn is None:
            return {"error": f"MCP server unavailable: {self.spec.name}"}
        try:
            result = await conn.session.call_tool(tool, arguments, read_timeout_seconds=self.spec.timeout_ms / 1000)
        except Exception as exc:
            if self._stopping:
                return {"error": "cancelled: the server is shutting down"}
            return {"error": _message(exc)}
        return _response(result)

    async def close(self) -> None:
        self._stopping = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _response(result: Any) -> dict[str, Any]:
    """tools/call's result as /tools answers: its text parts joined, or an error."""
    parts = [getattr(part, "text", "") for part in getattr(result, "content", None) or ()
             if getattr(part, "type", None) == "text"]
    text = "\n".join(parts)
    if getattr(result, "is_error", False):
        return {"error": text or "MCP tool returned an error"}
    return {"plain_text_response": text}


class McpServers:
    """All configured servers and the tools their warmup found."""

    def __init__(self, specs: list[McpServerSpec]) -> None:
        self.servers = {spec.name: McpServer(spec) for spec in specs}
        self.tools: list[McpToolDef] = []

    async def warmup(self) -> None:
        async def one(server: McpServer) -> list[McpToolDef]:
            try:
                tools = await server.list_tools()
            except Exception as exc:
                log.warning("MCP warmup: %r failed: %s", server.spec.name, _message(exc))
                return []
            log.info("MCP warmup: %r has %d tools", server.spec.name, len(tools))
            return tools

        found = await asyncio.gather(*(one(s) for s in self.servers.values()))
        self.tools = [tool for tools in found for tool in tools]

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.servers[server].call(tool, arguments)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers.values()), return_exceptions=True)
