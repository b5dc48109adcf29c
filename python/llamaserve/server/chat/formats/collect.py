"""Events gathered into what a non-streamed reply reports: its text and its calls."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from dataclasses import dataclass, field

from llamaserve.server.chat.formats.events import CallEnd, CallStart, Event, MalformedCall, ReasoningDelta, TextDelta
from llamaserve.server.chat.tools import ToolCall


@dataclass
class Collected:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    _started: dict[int, CallStart] = field(default_factory=dict)

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, TextDelta):
                self.text.append(event.text)
            elif isinstance(event, ReasoningDelta):
                self.reasoning.append(event.text)
            elif isinstance(event, CallStart):
                self._started[event.index] = event
            elif isinstance(event, CallEnd):
                start = self._started.pop(event.index)
                self.calls.append(ToolCall(start.id, start.name, event.arguments))

    @property
    def content(self) -> str | None:
        text = "".join(self.text)
        return text if text or not self.calls else None


class Parser(Protocol):
    done: bool  # needs nothing more (the rest of the reply may be dropped)

    def feed(self, text: str) -> list[Event]: ...
    def finish(self) -> list[Event]: ...


def parse_whole(parser: Parser, text: str) -> Collected:
    """A whole reply read at once; a call that does not parse leaves the reply as text."""
    collected = Collected()
    try:
        collected.add(parser.feed(text))
        collected.add(parser.finish())
    except MalformedCall:
        return Collected(text=[text])
    return collected
