"""What /tools serves: the enabled built-in tools and the MCP servers' tools in one list, and a
call of one by name. Started by the app's lifespan (the MCP warmup), stopped at the first
shutdown signal (calls in flight end at once)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from llamaserve.server.tools import builtin, mcp_config
from llamaserve.server.tools.builtin import Tool
from llamaserve.server.tools.params import ToolParamError

log = logging.getLogger("llamaserve.tools")

# params the server sets from headers, never the model: x-tool-cwd, x-tool-runtime, x-resp-type
HEADER_PARAMS = {"x-tool-cwd": "cwd", "x-tool-runtime": "runtime", "x-resp-type": "resp_type"}
RUNTIME_ENGINES = ("docker", "podman")


class UnknownTool(LookupError):
    """404: no such tool, or stream = true for one that does not stream."""


class BadRuntime(ValueError):
    """400: an x-tool-runtime llamaserve cannot honour (it never falls back to the host)."""


class ToolService:
    def __init__(self, tools: tuple[str, ...] = (), mcp_servers_json: str | None = None,
                 mcp_servers_config: str | None = None) -> None:
        self.builtin = builtin.enabled(tools)
        self.specs = mcp_config.load(mcp_servers_json, mcp_servers_config)  # ValueError naming the flag
        if self.specs:
            try:
                import mcp  # noqa: F401
            except ImportError:
                flag = "--mcp-servers-json" if mcp_servers_json else "--mcp-servers-config"
                raise ValueError(f"{flag}: MCP servers need the mcp package: pip install 'llamaserve[mcp]'") from None
        self.mcp: Any = None
        self.tools: dict[str, Tool] = {tool.name: tool for tool in self.builtin}

    @classmethod
    def from_config(cls, config: Any) -> ToolService:
        service = cls(config.tools, config.mcp_servers_json, config.mcp_servers_config)
        on = [what for what, yes in (("built-in tools " + ",".join(t.name for t in service.builtin), service.builtin),
                                     (f"{len(service.specs)} MCP server(s)", service.specs),
                                     ("/cors-proxy", config.ui_mcp_proxy)) if yes]
        if on:
            log.warning("experimental, for trusted machines only: %s", "; ".join(on))
            if "*" in config.cors_origins and not config.auth_enabled:
                log.warning("security: no API key is set and CORS allows every origin: any web page this "
                            "machine's browser opens can use them (set --api-keys, or --cors-origins localhost)")
        return service

    @property
    def enabled(self) -> bool:
        """/tools answers only with built-in tools enabled or MCP servers configured (else 403)."""
        return bool(self.builtin or self.specs)

    async def start(self) -> None:
        if not self.specs:
            return
        from llamaserve.server.tools.mcp_client import McpServers  # the mcp package: only when configured

        self.mcp = McpServers(self.specs)
        await self.mcp.warmup()
        for tool in self.mcp.tools:
            name = f"{tool.server}_{tool.name}"
            if name in self.tools:
                log.warning("MCP tool %r of server %r has the name of another tool, skipping it", name, tool.server)
                continue
            self.tools[name] = _mcp_tool(name, tool, self.mcp)

    async def stop(self) -> None:
        if self.mcp is not None:
            await self.mcp.close()

    def list(self) -> list[dict[str, Any]]:
        return [tool.to_json() for tool in self.tools.values()]

    def find(self, name: str, stream: bool) -> Tool:
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownTool(f"unknown tool \"{name}\"")
        if stream and tool.stream is None:
            raise UnknownTool(f"tool \"{name}\" does not support stream = true")
        return tool

    async def call(self, tool: Tool, params: dict[str, Any]) -> dict[str, Any]:
        return await tool.run(params)

    def stream(self, tool: Tool, params: dict[str, Any]) -> AsyncIterator[str]:
        assert tool.stream is not None
        return tool.stream(params)


def with_headers(params: dict[str, Any], headers: Any) -> dict[str, Any]:
    """The params with the header-set ones taken from the headers only."""
    params = {k: v for k, v in params.items() if k not in HEADER_PARAMS.values()}
    for header, name in HEADER_PARAMS.items():
        if value := headers.get(header):
            params[name] = value
    if "runtime" in params:
        _check_runtime(params["runtime"])
    return params


def _check_runtime(runtime: str) -> None:
    """x-tool-runtime names an isolate (a container, an ssh host) to run the tool in; llamaserve
    runs tools on the host only, so any runtime is refused, a malformed one with the reason."""
    for engine in RUNTIME_ENGINES:
        if runtime.startswith(f"{engine}-container:"):
            cid = runtime.split(":", 1)[1]
            if not cid or cid.startswith("-") or not all(c.isalnum() or c in "_.-" for c in cid):
                raise BadRuntime(f"invalid container id: {cid}")
            raise BadRuntime(f"tool runtime {runtime} is not supported by this server (tools run on the host only)")
    if runtime.startswith("ssh:"):
        target = runtime[4:]
        if not target or target.startswith("-") or any(c.isspace() for c in target):
            raise BadRuntime(f"invalid ssh target: {target}")
        raise BadRuntime(f"tool runtime {runtime} is not supported by this server (tools run on the host only)")
    raise BadRuntime(f"unknown tool runtime: {runtime}")


def _mcp_tool(name: str, tool: Any, servers: Any) -> Tool:
    schema = tool.input_schema if isinstance(tool.input_schema, dict) and tool.input_schema else {
        "type": "object", "properties": {}}
    if schema.get("type") == "object" and "properties" not in schema:
        schema = {**schema, "properties": {}}

    async def run(params: dict[str, Any]) -> dict[str, Any]:
        arguments = {k: v for k, v in params.items() if k not in HEADER_PARAMS.values()}
        return await servers.call(tool.server, tool.name, arguments)

    return Tool(name, name, tool.description, schema, run, kind="mcp", uses_cwd=False)


__all__ = ["BadRuntime", "ToolParamError", "ToolService", "UnknownTool", "with_headers"]
