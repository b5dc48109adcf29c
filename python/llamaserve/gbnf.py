"""Writing GBNF for llama.cpp's grammar sampler: the terminals of JSON text, string
formats, literals and bounded repetitions (json_grammar/ builds grammars from these)."""
from __future__ import annotations

import json
from typing import Any

# Shared terminals. `ws` allows nothing, one space, or a newline and a bounded indent.
PRIMITIVES: dict[str, str] = {
    "ws": '| " " | "\\n" [ \\t]{0,20}',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\""',
    "integer": '"-"? ("0" | [1-9] [0-9]{0,15})',
    "number": '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws (member ("," ws member)*)? "}"',
    "member": 'string ws ":" ws value ws',
    "array": '"[" ws (value ws ("," ws value ws)*)? "]"',
}
PRIMITIVE_DEPS: dict[str, tuple[str, ...]] = {
    "string": ("char",), "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("ws", "member"), "member": ("string", "ws", "value"), "array": ("ws", "value"),
}
FORMATS: dict[str, str] = {
    "date": '[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
    "time": '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? '
            '("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])',
    "uuid": '[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}',
}
FORMATS["date-time"] = FORMATS["date"] + ' "T" ' + FORMATS["time"]


def literal(text: str) -> str:
    """A GBNF string literal matching exactly `text`."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_text(value: Any) -> str:
    """One JSON value written compactly."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_literal(value: Any) -> str:
    """A GBNF literal for one JSON value written compactly."""
    return literal(json_text(value))


def repeat(item: str, low: int, high: int | None) -> str:
    """`item` low..high times (high None: unbounded), in GBNF."""
    if high is None:
        return f"({item}){{{low},}}" if low else f"({item})*"
    if high == 0:
        return ""
    if low == high:
        return f"({item}){{{low}}}" if low != 1 else f"({item})"
    return f"({item}){{{low},{high}}}"

