"""A small MCP server for tests/test_tools_api.py, on the MCP SDK's MCPServer over stdio:
greet, add, a tool that fails, one that sleeps, one that ends its own process, and a count of
the calls this process has had (to tell a respawned server from the first)."""
from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("llamaserve-test", log_level="WARNING")
calls = 0


@server.tool()
def greet(name: str) -> str:
    """Say hello to someone."""
    global calls
    calls += 1
    return f"hello, {name}"


@server.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return str(a + b)


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ValueError(f"failed because {reason}")


@server.tool()
async def nap(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def die() -> str:
    """End this server's process."""
    os._exit(3)


@server.tool()
def pid() -> str:
    """This process's id."""
    return str(os.getpid())


if __name__ == "__main__":
    server.run("stdio")
