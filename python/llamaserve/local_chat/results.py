"""What Engine.chat returns: the whole reply, or (streamed) its chunks as they come."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llamaserve.server.chat.tools import ToolCall


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def of(cls, stats: dict[str, Any]) -> Usage:
        return cls(stats.get("prompt_tokens", 0), stats.get("completion_tokens", 0),
                   stats.get("cached_tokens", 0), stats.get("reasoning_tokens", 0))


@dataclass(frozen=True)
class ChatReply:
    """A whole reply: its text, the reasoning a reasoning model wrote apart from it, the tool
    calls it made (arguments as JSON text, as the OpenAI API has them)."""
    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str  # stop | length | tool_calls
    usage: Usage
    reasoning: str | None = None

    def message(self) -> dict[str, Any]:
        """The reply as an assistant message, to append to the conversation for the next turn."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return out

    def arguments(self, i: int = 0) -> dict[str, Any]:
        """The i-th tool call's arguments, parsed."""
        return json.loads(self.tool_calls[i].arguments)


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    id: str | None = None  # with the name, in the call's first delta
    name: str | None = None
    arguments: str = ""  # the next piece of the arguments' JSON text


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed reply; the last one has finish_reason and usage."""
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
