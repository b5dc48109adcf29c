"""llama-cpp-python's LlamaGrammar: GBNF text the engine compiles when a call uses it (so a
bad grammar is an error of that call, as on every API)."""
from __future__ import annotations

import json
from typing import Any

from llamaserve.json_grammar import schema_to_grammar


class LlamaGrammar:
    def __init__(self, grammar: str) -> None:
        self._grammar = grammar  # llama-cpp-python's attribute name: compat/calls.py reads either

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> LlamaGrammar:
        return cls(grammar)

    @classmethod
    def from_file(cls, file: str, verbose: bool = True) -> LlamaGrammar:
        with open(file, encoding="utf-8") as f:
            return cls(f.read())

    @classmethod
    def from_json_schema(cls, json_schema: str | dict[str, Any], verbose: bool = True) -> LlamaGrammar:
        schema = json.loads(json_schema) if isinstance(json_schema, str) else json_schema
        return cls(schema_to_grammar(schema))
