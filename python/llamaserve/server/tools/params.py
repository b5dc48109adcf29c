"""Reading a tool's params: a missing or mistyped one is a ToolParamError naming it (400)."""
from __future__ import annotations

import os
from typing import Any


class ToolParamError(ValueError):
    pass


def string(params: dict[str, Any], name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None:
        raise ToolParamError(f"missing param \"{name}\"")
    if not isinstance(value, str):
        raise ToolParamError(f"param \"{name}\" must be a string")
    return value


def integer(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ToolParamError(f"param \"{name}\" must be an integer")
    return value


def boolean(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise ToolParamError(f"param \"{name}\" must be a boolean")
    return value


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of what a tool starts (a shell command, an MCP server): the server's,
    less the variables that hold its secrets (API keys, JWT secret), which a command could
    print for the model to read."""
    from llamaserve.config import secret_env_names

    hidden = secret_env_names()
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **(extra or {})}


def resolve(params: dict[str, Any], path: str) -> str:
    """`path` as the file tools open it: ~ expanded, a relative one under the x-tool-cwd header's
    directory (else the server's working directory)."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(params.get("cwd") or os.getcwd(), path)
