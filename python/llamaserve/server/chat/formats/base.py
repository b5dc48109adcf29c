"""A model family's tool-call format, and the streaming output parser that runs its reader.

A format says how to recognize it in a chat template (`detect`), how its replies are read
(`read`, a generator over the reply: see reading.py), and how to force a call in its own
syntax (`call_grammar`). The parser feeds a reader the reply piece by piece and returns the
events that became certain; it never raises on model output except MalformedCall, for a call
whose name was already sent.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.events import Event, MalformedCall, TextDelta
from llamaserve.server.chat.formats.grammar import json_call_grammar
from llamaserve.server.chat.formats.reading import Cursor, Reader, advance
from llamaserve.server.chat.tools import Tool, ToolChoice


class ToolFormat:
    """One family's way of writing tool calls. Subclasses set `name` and `markers` (strings
    whose presence in a template source selects the format) and write `read`."""

    name: ClassVar[str] = "base"
    markers: ClassVar[tuple[str, ...]] = ()  # all of them must be in the template
    # Markers the reader needs to see that may be control tokens in the model's vocabulary
    # (llama.cpp writes control tokens out as nothing): the engine writes these as text.
    preserved: ClassVar[tuple[str, ...]] = ()
    reads_reasoning: ClassVar[bool] = False  # its reader sends reasoning out too (channels): used without tools

    @classmethod
    def detect(cls, source: str) -> bool:
        return bool(cls.markers) and all(m in source for m in cls.markers)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        raise NotImplementedError

    def template_variables(self, tools: Sequence[Tool]) -> dict[str, Any]:
        """Variables this family's templates read besides `tools`, which the caller must set."""
        return {}

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        """GBNF that forces a call (tool_choice required or named), in this format's own
        syntax; the generic JSON object unless the format knows better."""
        return json_call_grammar(tools, choice)


class OutputParser:
    """Reads one reply with a format's reader; feed() pieces, then finish()."""

    def __init__(self, fmt: ToolFormat, tools: Sequence[Tool], parallel: bool = True) -> None:
        self.cursor = Cursor()
        self.calls = Calls([t.name for t in tools], parallel, {t.name: t.parameters for t in tools if t.parameters})
        self._reader: Reader | None = fmt.read(self.cursor, self.calls)
        self.done = False  # the reader needs nothing more (parallel_tool_calls false, a call made)

    def feed(self, text: str) -> list[Event]:
        if self.done:
            return []
        self.cursor.text += text
        return self._run()

    def finish(self) -> list[Event]:
        self.cursor.closed = True
        return self._run()

    def _run(self) -> list[Event]:
        events: list[Event] = []
        reader = self._reader
        if reader is None:
            return events
        try:
            if advance(reader, events):
                self._reader, self.done = None, True
        except MalformedCall as exc:
            self._reader, self.done = None, True
            exc.events = events  # type: ignore[attr-defined]  # what was certain before it failed
            raise
        except (RecursionError, MemoryError):  # never a crash on model output
            self._reader, self.done = None, True
            error = MalformedCall("the model's reply could not be read")
            error.events = events  # type: ignore[attr-defined]
            raise error from None
        return events


class PlainText:
    """No tools offered: every piece is text, at once."""

    done = False

    def feed(self, text: str) -> list[Event]:
        return [TextDelta(text)] if text else []

    def finish(self) -> list[Event]:
        return []
