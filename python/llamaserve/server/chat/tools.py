"""Tools as every API family offers them, once parsed: the tool, the choice of whether and
which to call, a finished call; and the system-prompt text for templates that cannot show
tools themselves."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """Tells a model whose template cannot show tools (OpenAI tool objects) which exist and
    how to call one."""
    lines = [json.dumps(t, ensure_ascii=False) for t in tools]
    return ("You can call these functions:\n" + "\n".join(lines) +
            '\nTo call one, reply with only a JSON object: {"name": <function name>, '
            '"arguments": <arguments object>}')
