"""JSON Schema -> GBNF: a grammar whose every sentence is JSON that validates against the
schema, for llama.cpp's grammar sampler (root rule `root`).

The grammar may be stricter than the schema (it never has to produce every valid document,
only valid ones): properties come in the order the schema lists them, additional properties
are allowed only when the schema says so explicitly, numbers have bounded digits, and
whitespace between tokens is bounded so that generation cannot run away in it.

Supported: type (one or a list), properties, required, additionalProperties, items,
prefixItems, minItems, maxItems, enum, const, anyOf, oneOf, allOf (of objects), $ref to
#, #/$defs/... and #/definitions/..., string minLength/maxLength and format (date, time,
date-time, uuid; other formats are annotations), integer minimum/maximum (a bounded range,
or a lower bound of 0 or 1), number minimum 0, nullable. Annotations (title, description,
default, examples, ...) are ignored. Anything else raises SchemaError naming the keyword.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llamaserve.json_grammar.converter import SchemaConverter
from llamaserve.json_grammar.limits import SchemaError
from llamaserve.native import MAX_GRAMMAR_BYTES

__all__ = ["SchemaError", "grammar_with_rules", "json_object_grammar", "json_value_grammar", "schema_to_grammar"]


def schema_to_grammar(schema: Any) -> str:
    """GBNF for JSON documents valid against `schema`; SchemaError if it cannot be done."""
    converter = SchemaConverter(schema)
    return _built(lambda: {"root": converter.visit(schema, "root-value", ""), **converter.rules})


def _built(build: Callable[[], dict[str, str]]) -> str:
    """The rules `build` makes as GBNF text. Values nested deeper than Python compares or
    writes them, and grammars over the engine's size limit, are SchemaErrors too."""
    try:
        rules = build()
    except RecursionError:
        raise SchemaError("schema nested too deeply") from None
    text = _emit(rules)
    size = len(text.encode())
    if size > MAX_GRAMMAR_BYTES:
        raise SchemaError(f"schema too large: its grammar would take {size} bytes (at most {MAX_GRAMMAR_BYTES})")
    return text


def _emit(rules: dict[str, str]) -> str:
    return "".join(f"{name} ::= {body}\n" for name, body in rules.items())


def json_object_grammar() -> str:
    """GBNF for any JSON object (response_format {"type": "json_object"})."""
    converter = SchemaConverter({})
    root = converter.use("object")
    return _emit({"root": root, **converter.rules})


def json_value_grammar() -> str:
    """GBNF for any JSON value."""
    converter = SchemaConverter({})
    return _emit({"root": converter.use("value"), **converter.rules})


def grammar_with_rules(root: str, schemas: dict[str, Any], defs: dict[str, Any]) -> str:
    """GBNF whose root rule body is `root`, where each key of `schemas` names a rule matching
    the JSON valid against its schema (their $refs resolve against {"$defs": defs}); tool-call
    formats spell the text around each tool's arguments in `root`."""
    converter = SchemaConverter({"$defs": defs})

    def build() -> dict[str, str]:
        rules = {"root": root}
        for name, schema in schemas.items():
            rules[name] = converter.visit(schema, f"{name}-value", "")
        return {**rules, **converter.rules}
    return _built(build)
