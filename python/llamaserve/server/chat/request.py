"""The chat request every API family's protocol parses into: messages normalized for chat
templates (dicts with role, content as text, and optionally name, tool_calls with arguments
as objects, tool_call_id), sampling, structured output and tools."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llamaserve.server.chat.thinking import Thinking
from llamaserve.server.chat.tools import Tool, ToolChoice


@dataclass(frozen=True)
class Sampling:
    """What the engine gets for each choice (before max_tokens defaults and per-choice seeds)."""
    arguments: dict[str, Any]  # engine generation arguments
    n: int = 1
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class ResponseFormat:
    type: str  # text | json_object | json_schema
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: list[dict[str, Any]]
    sampling: Sampling
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: ResponseFormat = field(default_factory=lambda: ResponseFormat("text"))
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=lambda: ToolChoice("none"))
    parallel_tool_calls: bool = True
    warnings: tuple[str, ...] = ()  # what the request asked for that is not done (hosted tools...)
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # chat_template_kwargs
    thinking: Thinking = field(default_factory=Thinking)
    add_generation_prompt: bool = True  # false: the prompt ends where the conversation does
    continue_final: bool = True  # a last assistant message with text is continued, not answered

    @property
    def continued(self) -> str | None:
        """The text of the final assistant message the reply continues (as llama-server, vLLM's
        continue_final_message and Anthropic's prefill), if it does."""
        last = self.messages[-1] if self.messages else None
        if (self.continue_final and last is not None and last["role"] == "assistant" and last.get("content")
                and not last.get("tool_calls")):
            return last["content"]
        return None

    @property
    def offered_tools(self) -> list[Tool]:
        """The tools the model may call (none with tool_choice none)."""
        return [] if self.tool_choice.mode == "none" else self.tools


def with_tool_names(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each tool result the name of the call it answers (templates often show it)."""
    names = {}
    for m in messages:
        for call in m.get("tool_calls", []):
            if "id" in call:
                names[call["id"]] = call["function"]["name"]
    return [{**m, "name": names[m["tool_call_id"]]} if m["role"] == "tool" and "name" not in m
            and m["tool_call_id"] in names else m for m in messages]


def history_arguments(raw: str | dict[str, Any]) -> Any:
    """An earlier call's arguments as templates show them: the object when the text parses
    (nesting too deep to parse is text too), else the text as written."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw
