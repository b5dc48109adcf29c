"""Tool (function) calling: the grammar that forces a call, and finding calls in output.

- tool_choice "required" or a named function: the output is constrained by a grammar to one
  JSON call `{"name": ..., "arguments": {...}}` whose arguments match that tool's schema.
- tool_choice "auto": the model writes freely; a call is recognized afterwards in the forms
  models use: `<tool_call>{...}</tool_call>` (Hermes, Qwen), a ```json / ```tool_code fence,
  a bare JSON object or list of them with name and arguments (or parameters), or a Python-style
  call `name(a=1)` / `[name(a=1), ...]` (Gemma). Names must be among the offered tools.
- "none": tools are ignored.
"""
from __future__ import annotations

import ast
import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llamaserve.json_grammar import schema_to_grammar

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments object

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters if self.parameters is not None else {
            "type": "object", "properties": {}}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    mode: str  # none | auto | required | function
    name: str | None = None  # with mode "function"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


# -- forcing a call --------------------------------------------------------------------------

def _prefix_refs(node: Any, prefix: str) -> Any:
    """Re-root every local $ref of a tool's schema under `prefix` (a JSON pointer)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#"):
                out[key] = "#" + prefix + value[1:]
            else:
                out[key] = _prefix_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_prefix_refs(v, prefix) for v in node]
    return node


def call_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """A JSON schema of one call to any of `tools`; each tool's parameters keep their own
    $defs (moved under #/$defs/tool-<i>)."""
    defs: dict[str, Any] = {}
    options = []
    for i, tool in enumerate(tools):
        key = f"tool-{i}"
        # No parameters: a function without arguments (as OpenAI defines it).
        parameters = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        if not parameters:  # {}: any arguments, but still an object
            parameters = {"type": "object"}
        defs[key] = _prefix_refs(parameters, f"/$defs/{key}")
        options.append({"type": "object",
                        "properties": {"name": {"const": tool.name}, "arguments": {"$ref": f"#/$defs/{key}"}},
                        "required": ["name", "arguments"], "additionalProperties": False})
    root: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**root, "$defs": defs}


def call_grammar(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """GBNF forcing one call: of the named tool, or of any tool for "required"."""
    chosen = [t for t in tools if choice.mode != "function" or t.name == choice.name]
    return schema_to_grammar(call_schema(chosen))


# -- finding calls in output -----------------------------------------------------------------

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_code|tool_call|python)?\s*\n?(.*?)```", re.S)


def _as_call(obj: Any, names: set[str]) -> tuple[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if name not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return name, arguments


def _json_calls(text: str, names: set[str]) -> list[tuple[str, Any]] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, names) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _python_calls(text: str, names: set[str]) -> list[tuple[str, Any]] | None:
    """`name(a=1, b="x")` or a list of such calls; arguments must be literals."""
    if len(text) > 20_000:
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    calls = []
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
                and not node.args):
            return None
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        try:
            json.dumps(arguments)
        except (TypeError, ValueError):
            return None
        calls.append((node.func.id, arguments))
    return calls or None


def parse_tool_calls(text: str, tools: Sequence[Tool]) -> tuple[str | None, list[ToolCall]]:
    """(content, calls) found in a model's output; calls is [] when it made none."""
    names = {t.name for t in tools}
    stripped = text.strip()
    found: list[tuple[str, Any]] | None = None
    content: str | None = stripped
    if "<tool_call>" in stripped:
        bodies = _TAGGED.findall(stripped)
        parsed = [_json_calls(b, names) for b in bodies]
        if parsed and all(p is not None for p in parsed):
            found = [c for p in parsed for c in p]  # type: ignore[union-attr]
            content = stripped[:stripped.index("<tool_call>")].strip()
    if found is None:
        fence = _FENCED.search(stripped)
        if fence:
            body = fence.group(1).strip()
            found = _json_calls(body, names) or _python_calls(body, names)
            if found is not None:
                content = (stripped[:fence.start()] + stripped[fence.end():]).strip()
    if found is None:
        found = _json_calls(stripped, names) or _python_calls(stripped, names)
        if found is not None:
            content = None
    if not found:
        return text, []
    calls = [ToolCall(new_call_id(), name, json.dumps(args, ensure_ascii=False)) for name, args in found]
    return content or None, calls


_OPENERS = ("<tool_call>", "```", "{", "[")


def may_become_call(text: str, tools: Sequence[Tool]) -> bool:
    """While streaming with tool_choice auto: could output starting with `text` still turn
    out to be a tool call? (Then it is held back rather than streamed as content.)"""
    head = text.lstrip()
    if not head:
        return True
    if any(head.startswith(o) or o.startswith(head) for o in _OPENERS):
        return True
    # A Python-style call: a tool's name, then "(".
    return any(head.startswith(t.name + "(") or (t.name + "(").startswith(head) for t in tools)


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """Tells a model whose template cannot show tools (OpenAI tool objects) which exist and
    how to call one."""
    lines = [json.dumps(t, ensure_ascii=False) for t in tools]
    return ("You can call these functions:\n" + "\n".join(lines) +
            '\nTo call one, reply with only a JSON object: {"name": <function name>, '
            '"arguments": <arguments object>}')
