"""MCP server definitions in the Cursor format llama-server reads: {"mcpServers": {name:
{command, args, env, cwd, timeout_ms}}}. Read at startup; a bad definition is a ValueError
naming the flag, so the server never starts with it."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("llamaserve.tools")

DEFAULT_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class McpServerSpec:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS


def parse(text: str, flag: str) -> list[McpServerSpec]:
    """The servers of one JSON document; entries without a command are skipped (as llama-server)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{flag}: expected a JSON object with \"mcpServers\"")
    servers = doc.get("mcpServers")
    if servers is None:
        log.warning("%s: no \"mcpServers\" in the JSON, no MCP server configured", flag)
        return []
    if not isinstance(servers, dict):
        raise ValueError(f"{flag}: \"mcpServers\" must be an object of name -> server")
    return [spec for name, entry in servers.items() if (spec := _server(name, entry, flag)) is not None]


def _server(name: str, entry: object, flag: str) -> McpServerSpec | None:
    where = f"{flag}: mcpServers.{name}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"{where}: a server name takes letters, digits, '-', '_' and '.' only")
    command = entry.get("command")
    if not command:
        log.warning("%s has no command, skipping it", where)
        return None
    if not isinstance(command, str):
        raise ValueError(f"{where}.command must be a string")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError(f"{where}.args must be an array of strings")
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{where}.env must be an object of strings")
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError(f"{where}.cwd must be a string")
    timeout_ms = entry.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ValueError(f"{where}.timeout_ms must be a positive whole number")
    return McpServerSpec(name, command, tuple(args), dict(env), cwd or None, timeout_ms)


def load(json_text: str | None, config_path: str | None) -> list[McpServerSpec]:
    """--mcp-servers-config's file, then --mcp-servers-json; a name seen twice keeps the first."""
    specs: list[McpServerSpec] = []
    if config_path:
        try:
            text = Path(config_path).expanduser().read_text()
        except OSError as exc:
            raise ValueError(f"--mcp-servers-config: cannot read {config_path}: {exc.strerror}") from None
        specs += parse(text, "--mcp-servers-config")
    if json_text:
        specs += parse(json_text, "--mcp-servers-json")
    seen: dict[str, McpServerSpec] = {}
    for spec in specs:
        if spec.name in seen:
            log.warning("MCP server %r is defined twice, keeping the first", spec.name)
            continue
        seen[spec.name] = spec
    return list(seen.values())
