"""What an output parser emits while it reads a model's reply: text, and tool calls whose
name comes first and whose arguments (a JSON object, as text) come in pieces."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int  # 0, 1, ... within the reply
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    text: str  # the next piece of the arguments' JSON text


@dataclass(frozen=True)
class CallEnd:
    index: int
    arguments: str  # all of the arguments: a JSON object, checked to parse


Event = TextDelta | ReasoningDelta | CallStart | CallArguments | CallEnd


class MalformedCall(Exception):
    """A tool call that had begun (its name was sent) cannot be completed: its arguments do
    not parse, or the reply ended inside it. The families end their stream with an error."""
