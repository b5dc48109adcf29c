"""A plan's run read through one output parser per choice: what every family turns into its
own events (streamed) or bodies (collected). The one copy of the stream logic: parsing,
stopping a choice its parser is done with, the finish reason, and the error that ends a
stream that has started."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from llamaserve.errors import EngineError
from llamaserve.results import TokenLogprob
from llamaserve.server.chat.formats.collect import Collected, Parser
from llamaserve.server.chat.formats.events import CallStart, Event, MalformedCall
from llamaserve.server.chat.run import Run, ended
from llamaserve.server.chat.tools import ToolCall
from llamaserve.server.errors import ApiError, to_api_error


def call_failed(exc: MalformedCall) -> ApiError:
    return ApiError(500, "TOOL_CALL_INVALID", str(exc),
                    "the model wrote a tool call that cannot be read: retry, or lower the temperature")


@dataclass
class Update:
    """What one choice produced since the last update."""
    choice: int
    events: list[Event]
    records: list[TokenLogprob]
    stats: dict[str, Any] | None = None  # set once the choice ended
    finish: str | None = None  # stop | length | tool_calls, once it ended
    tokens: int = 0  # tokens generated since the last update
    # with return_progress: the prompt's progress reports, (total, cache, processed, ms) each
    progress: list[tuple[int, int, int, float]] = field(default_factory=list)


class ChatRun:
    """Reads a run's choices through their output parsers."""

    def __init__(self, run: Run, new_parser: Callable[[], Parser]) -> None:
        """`new_parser`: a fresh output parser for one choice (ChatPlan.parser; PlainText
        for completions, whose text is never parsed)."""
        self.run = run
        self.parsers = [new_parser() for _ in run.generations]
        self.called = [False] * len(run.generations)  # a choice made a tool call
        self.stopped = [False] * len(run.generations)  # its parser needed nothing more

    @property
    def choices(self) -> int:
        return len(self.parsers)

    def close(self) -> None:
        self.run.close()

    def parse(self, i: int, pieces: list[str], finished: bool) -> list[Event]:
        parser = self.parsers[i]
        events = parser.feed("".join(pieces)) if pieces else []
        if finished:
            events += parser.finish()
        if any(isinstance(e, CallStart) for e in events):
            self.called[i] = True
        if parser.done and not finished and not self.stopped[i]:
            self.stopped[i] = True  # e.g. parallel_tool_calls false, and the call is made
            self.run.stop(i)
        return events

    def finished(self, i: int, stats: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if self.stopped[i] and stats.get("finish_reason") == "cancelled":
            stats = {**stats, "finish_reason": "stop"}  # we ended it: a normal end
        reason = ended(stats)
        return stats, "tool_calls" if self.called[i] else reason

    async def updates(self) -> AsyncIterator[Update]:
        """Each choice's events as they become certain; a call that cannot be read ends the
        stream with ApiError (after the events that were certain before it)."""
        async for i, pieces, records, stats in self.run.events():
            try:
                events = self.parse(i, pieces, stats is not None)
            except MalformedCall as exc:
                yield Update(i, getattr(exc, "events", []), records, tokens=len(pieces))
                raise call_failed(exc) from None
            update = Update(i, events, records, tokens=len(pieces), progress=self.run.take_progress(i))
            if stats is not None:
                update.stats, update.finish = self.finished(i, stats)
            yield update


@dataclass
class Choice:
    """One choice, whole: what a non-streamed response reports."""
    collected: Collected = field(default_factory=Collected)
    raw: list[str] = field(default_factory=list)
    records: list[TokenLogprob] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    finish: str = "stop"
    unreadable: bool = False  # a call did not parse: the reply is reported as text

    @property
    def content(self) -> str | None:
        return "".join(self.raw) if self.unreadable else self.collected.content

    @property
    def calls(self) -> list[ToolCall]:
        return [] if self.unreadable else self.collected.calls

    @property
    def reasoning(self) -> str | None:
        return "".join(self.collected.reasoning) or None


async def collect(chat: ChatRun) -> list[Choice]:
    """Every choice, whole. A tool call that does not parse leaves its reply as text."""
    choices = [Choice() for _ in range(chat.choices)]
    async for i, pieces, records, stats in chat.run.events():
        choice = choices[i]
        choice.raw += pieces
        choice.records += records
        if not choice.unreadable:
            try:
                choice.collected.add(chat.parse(i, pieces, stats is not None))
            except MalformedCall:
                choice.unreadable = True
        if stats is not None:
            choice.stats, choice.finish = chat.finished(i, stats)
            if choice.unreadable:
                choice.finish = ended(choice.stats)
    return choices


class FamilyStream(ABC):
    """Base of each family's stream of SSE events over a ChatRun: the family writes its
    opening, each update, its closing and its error event; this class runs them once for all
    (an engine failure or an unreadable call mid-stream ends the stream with the family's
    error event), and aclose() ends the run even if the stream was never iterated."""

    reraise = False  # in process (llamaserve.compat): errors raised to the caller, not sent as events

    def __init__(self, chat: ChatRun) -> None:
        self.chat = chat
        self._iterator: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncIterator[bytes]:
        try:
            yield self.opening()
            async for update in self.chat.updates():
                if out := self.update(update):
                    yield out
            yield self.closing()
        except (EngineError, ApiError) as exc:  # the status line is long sent
            if self.reraise:
                raise
            yield self.error_event(to_api_error(exc))
        if tail := self.terminator():
            yield tail

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self.chat.close()

    @abstractmethod
    def opening(self) -> bytes: ...

    @abstractmethod
    def update(self, update: Update) -> bytes: ...

    @abstractmethod
    def closing(self) -> bytes: ...

    @abstractmethod
    def error_event(self, error: ApiError) -> bytes: ...

    def terminator(self) -> bytes:
        """What ends the stream, after an error too (OpenAI chat's [DONE])."""
        return b""
