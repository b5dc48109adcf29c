"""Grammars that force a tool call (tool_choice required or named): the JSON schema of one
call object, and GBNF that spells a call in a format's own syntax around each tool's
arguments."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llamaserve.gbnf import literal
from llamaserve.json_grammar import grammar_with_rules, schema_to_grammar
from llamaserve.server.chat.tools import Tool, ToolChoice


def _prefix_refs(node: Any, prefix: str) -> Any:
    """Re-root every local $ref of a tool's schema under `prefix` (a JSON pointer)."""
    if isinstance(node, dict):
        return {key: ("#" + prefix + value[1:] if key == "$ref" and isinstance(value, str) and value.startswith("#")
                      else _prefix_refs(value, prefix)) for key, value in node.items()}
    if isinstance(node, list):
        return [_prefix_refs(v, prefix) for v in node]
    return node


def arguments_schema(tool: Tool) -> dict[str, Any]:
    """A tool's arguments schema; none: no arguments (as OpenAI defines it); {}: any object."""
    parameters = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return parameters or {"type": "object"}


def chosen(tools: Sequence[Tool], choice: ToolChoice) -> list[Tool]:
    return [t for t in tools if choice.mode != "function" or t.name == choice.name]


def _defs(tools: Sequence[Tool]) -> dict[str, Any]:
    """Each tool's arguments schema under #/$defs/tool-<i>, its own $refs re-rooted there."""
    return {f"tool-{i}": _prefix_refs(arguments_schema(t), f"/$defs/tool-{i}") for i, t in enumerate(tools)}


def call_schema(tools: Sequence[Tool], name_key: str = "name", arguments_key: str = "arguments") -> dict[str, Any]:
    """A JSON schema of one call object to any of `tools`."""
    options = [{"type": "object",
                "properties": {name_key: {"const": tool.name}, arguments_key: {"$ref": f"#/$defs/tool-{i}"}},
                "required": [name_key, arguments_key], "additionalProperties": False}
               for i, tool in enumerate(tools)]
    root: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**root, "$defs": _defs(tools)}


def json_call_grammar(tools: Sequence[Tool], choice: ToolChoice, name_key: str = "name",
                      arguments_key: str = "arguments") -> str:
    """GBNF forcing one JSON call object: of the named tool, or of any tool for "required"."""
    return schema_to_grammar(call_schema(chosen(tools, choice), name_key, arguments_key))


def wrapped_json_call_grammar(tools: Sequence[Tool], choice: ToolChoice, before: str, after: str,
                              name_key: str = "name", arguments_key: str = "arguments") -> str:
    """GBNF of `before`, one JSON call object, then `after` (Hermes' <tool_call> tags...)."""
    schema = call_schema(chosen(tools, choice), name_key, arguments_key)
    defs = schema.pop("$defs")
    root = " ".join(p for p in (literal(before) if before else "", "call", literal(after) if after else "") if p)
    return grammar_with_rules(root, {"call": schema}, defs)


def per_tool_grammar(tools: Sequence[Tool], choice: ToolChoice,
                     spell: Callable[[Tool], tuple[str, str]]) -> str:
    """GBNF choosing one tool, where `spell(tool) -> (text before, text after)` surrounds that
    tool's JSON arguments in the format's syntax (the name outside the arguments)."""
    tools = chosen(tools, choice)
    options = []
    for i, tool in enumerate(tools):
        before, after = spell(tool)
        options.append(" ".join(p for p in (literal(before) if before else "", f"arguments-{i}",
                                            literal(after) if after else "") if p))
    root = " | ".join(f"( {o} )" for o in options)
    schemas = {f"arguments-{i}": {"$ref": f"#/$defs/tool-{i}"} for i in range(len(tools))}
    return grammar_with_rules(root, schemas, _defs(tools))


def string_valued(schema: Any) -> bool:
    """Whether a parameter's schema allows strings only (its value is text as written)."""
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "string" or schema.get("type") == ["string"]:
        return True
    values = schema["enum"] if isinstance(schema.get("enum"), list) else [schema["const"]] if "const" in schema else []
    return bool(values) and all(isinstance(v, str) for v in values)


def properties_of(schema: Any) -> dict[str, Any]:
    """The properties an object schema declares ({} when it declares none)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return properties if isinstance(properties, dict) else {}


def _char_class(chars: Sequence[str], negate: bool = False) -> str:
    escaped = "".join("\\" + c if c in "\\]-[" else "\\x5E" if c == "^" else literal(c)[1:-1] for c in sorted(chars))
    return f"[{'^' if negate else ''}{escaped}]"


def excluding(name: str, stop: str) -> dict[str, str]:
    """GBNF rules (the first is `name`) for any text in which `stop` never occurs and that
    does not end partway into it: a raw value followed by its closing tag, which the reader
    then finds where the grammar put it. Rule k is the state of matching `stop` where the
    last k characters read are its first k; a character that would complete it has none."""
    alphabet = sorted(set(stop))

    def after(k: int, c: str) -> int:
        seen = stop[:k] + c
        return next(n for n in range(len(seen), -1, -1) if seen.endswith(stop[:n]))

    def state(k: int) -> str:
        return name if k == 0 else f"{name}-{k}"

    rules = {}
    for k in range(len(stop)):
        targets: dict[int, list[str]] = {}
        for c in alphabet:
            targets.setdefault(after(k, c), []).append(c)
        targets.pop(0, None)
        special = [c for chars in targets.values() for c in chars]
        targets.pop(len(stop), None)
        options = [f"{_char_class(special, negate=True)} {state(0)}"]
        options += [f"{_char_class(chars)} {state(target)}" for target, chars in sorted(targets.items())]
        rules[state(k)] = " | ".join((['""'] if k == 0 else []) + options)
    return rules


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _listed(items: Sequence[tuple[str, bool]], separator: str) -> str:
    """GBNF of `items` (expression, required) in order, optional ones optional, `separator`
    between two that are present (required ones are put first by the caller)."""
    sep = literal(separator) + " " if separator else ""
    required = [e for e, needed in items if needed]
    optional = [e for e, needed in items if not needed]
    if required or not sep:
        head = f" {sep}".join(required) if sep else " ".join(required)
        tail = [f"({sep if (required and sep) else ''}{e})?" for e in optional]
        return " ".join(p for p in (head, *tail) if p)
    starts = [" ".join([optional[i], *(f"({sep}{e})?" for e in optional[i + 1:])]) for i in range(len(optional))]
    return f"({' | '.join(starts)})?" if starts else ""


def per_parameter_grammar(tools: Sequence[Tool], choice: ToolChoice, call: Callable[[Tool], tuple[str, str]],
                          parameter: Callable[[str], tuple[str, str]], separator: str = "",
                          raw_strings: bool = True) -> str:
    """GBNF choosing one tool whose arguments are spelled one parameter at a time (XML
    parameters, Python keywords): `call(tool)` -> the text before and after its parameters,
    `parameter(name)` -> the text before and after one value, `separator` between two. A value
    is JSON valid against its parameter's schema; with `raw_strings`, a string one is raw text
    that never holds its closing text (what follows it, stripped). The required parameters
    come first, each group in the schema's order; a schema without properties takes none."""
    tools = chosen(tools, choice)
    schemas: dict[str, Any] = {}
    raw: dict[str, str] = {}  # closing text -> the rule of text without it
    extra: dict[str, str] = {}
    options = []
    for i, tool in enumerate(tools):
        arguments = arguments_schema(tool)
        required = arguments.get("required") if isinstance(arguments.get("required"), list) else []
        items = []
        for j, (key, schema) in enumerate(properties_of(arguments).items()):
            before, after = parameter(key)
            if raw_strings and string_valued(schema) and after.strip():
                if "enum" in schema or "const" in schema:
                    value = "(" + " | ".join(literal(v) for v in schema.get("enum", [schema.get("const")])) + ")"
                else:
                    value = raw.setdefault(after.strip(), f"raw{len(raw)}")
                    extra.update(excluding(value, after.strip()))
            else:
                value = f"param-{i}-{j}"
                schemas[value] = {"$ref": f"#/$defs/tool-{i}/properties/{_pointer(key)}"}
            items.append((" ".join(p for p in (literal(before) if before else "", value,
                                               literal(after) if after else "") if p), key in required))
        items.sort(key=lambda item: not item[1])
        before, after = call(tool)
        parts = (literal(before) if before else "", _listed(items, separator), literal(after) if after else "")
        options.append(" ".join(p for p in parts if p) or '""')
    root = " | ".join(f"( {o} )" for o in options)
    return grammar_with_rules(root, schemas, _defs(tools)) + "".join(f"{n} ::= {b}\n" for n, b in extra.items())
