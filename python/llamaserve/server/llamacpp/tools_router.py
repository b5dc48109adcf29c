"""llama-server's /tools: GET lists the tools (built-in ones --tools enables, MCP servers'
tools named <server>_<tool>), POST {tool, params, stream} calls one. A tool's own failure is a
200 {"error": ...} (the model reads it); a request that names no tool, an unknown one, or bad
params is a 4xx in llama-server's error shape; with no tool configured both answer 403."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import openapi, sse
from llamaserve.server.body import read_json
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.sse import EventStreamResponse
from llamaserve.server.tools.params import ToolParamError
from llamaserve.server.tools.service import BadRuntime, ToolService, UnknownTool, with_headers

DISABLED = "this feature is disabled: start the server with --tools or --mcp-servers-json/--mcp-servers-config"


def disabled(message: str = DISABLED) -> ApiError:
    return ApiError(403, "FORBIDDEN", message, fields={"type": "feature_disabled"})


def _service(request: Request) -> ToolService:
    tools: ToolService | None = getattr(request.app.state.llamaserve, "tools", None)
    if tools is None or not tools.enabled:
        raise disabled()
    return tools


def routes() -> list[Route]:
    async def list_tools(request: Request) -> Response:
        return JSONResponse(_service(request).list())

    async def call_tool(request: Request) -> Response:
        tools = _service(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid("body: expected a JSON object {tool, params, stream}")
        name, params, stream = body.get("tool"), body.get("params", {}), body.get("stream", False)
        if not isinstance(name, str) or not name:
            raise invalid("tool: expected the name of a tool (GET /tools lists them)")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise invalid("params: expected an object of the tool's arguments")
        if not isinstance(stream, bool):
            raise invalid("stream: expected true or false")
        try:
            tool = tools.find(name, stream)
            params = with_headers(params, request.headers)
            if stream:
                return EventStreamResponse(_events(tools.stream(tool, params)))
            return JSONResponse(await tools.call(tool, params))
        except UnknownTool as exc:
            raise ApiError(404, "NOT_FOUND", str(exc)) from None
        except (ToolParamError, BadRuntime) as exc:
            raise invalid(str(exc)) from None

    return [Route("/tools", list_tools, methods=["GET"]), Route("/tools", call_tool, methods=["POST"])]


async def _events(chunks: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """{"chunk"} events as the tool writes, then {"done": true} (with "error" if it failed)."""
    done: dict[str, Any] = {"done": True}
    try:
        async for chunk in chunks:
            if chunk:
                yield sse.event({"chunk": chunk})
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error goes in its last event
        done["error"] = str(exc) or type(exc).__name__
    yield sse.event(done)


_TAG = "llama-server endpoints"
_ERRORS = (400, 401, 403, 404, 413, 429)
OPENAPI_PATHS = {
    "/tools": {
        "get": openapi.operation(
            "The tools /tools calls: {tool, display_name, type (server or mcp), permissions, definition} each "
            "(403 unless --tools or MCP servers are configured)", _TAG,
            openapi.responses({200: {"type": "array", "items": {"type": "object"}}}, (401, 403, 429),
                              error_schema="LlamaCppError")),
        "post": openapi.operation(
            "Call a tool: {plain_text_response} or the tool's JSON, {error} if it failed; stream: true streams "
            "{chunk} events then {done}", _TAG,
            openapi.responses({200: {"type": "object"}}, _ERRORS, error_schema="LlamaCppError", event_stream=True),
            {"type": "object", "required": ["tool"], "properties": {
                "tool": {"type": "string", "description": "the tool's name, as GET /tools lists it"},
                "params": {"type": "object", "description": "its arguments, as its definition describes them"},
                "stream": {"type": "boolean", "description": "exec_shell_command: its output as it comes"}}}),
    },
}
