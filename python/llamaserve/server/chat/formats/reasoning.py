"""Reasoning kept apart from the answer: a model family's thinking markers (chosen from its
chat template), and the parser layer that sends what is between them out as reasoning and
the rest to the tool-call parser. Models think first, so only a reply that opens with the
marker (or whose prompt already opened it: "thinking forced open") has reasoning."""
from __future__ import annotations

from dataclasses import dataclass

from llamaserve.server.chat.formats.collect import Parser
from llamaserve.server.chat.formats.events import Event, ReasoningDelta
from llamaserve.server.chat.formats.reading import NEED, Cursor, Reader, advance, held_length, match, skip_space


@dataclass(frozen=True)
class ThinkingMarkers:
    opener: str
    closer: str
    signature: tuple[str, ...] = ()  # what picks it in a template source (default: both markers)

    def detect(self, source: str) -> bool:
        return all(s in source for s in self.signature or (self.opener, self.closer))


# Most specific first; <think> is the common one (Qwen3, DeepSeek R1, GLM, Kimi, MiniMax, SmolLM3, ...).
MARKERS = (
    ThinkingMarkers("<seed:think>", "</seed:think>"),  # ByteDance Seed-OSS
    ThinkingMarkers("[THINK]", "[/THINK]"),  # Magistral, Ministral reasoning
    ThinkingMarkers("<|START_THINKING|>", "<|END_THINKING|>"),  # Command R7B, Command A
    ThinkingMarkers("<|channel>thought", "<channel|>"),  # Gemma 4
    ThinkingMarkers("<|open|>think<|sep|>", "<|close|>think<|sep|>", ("open_tag('think')",)),  # Kimi K3
    ThinkingMarkers("<|inner_prefix|>", "<|inner_suffix|>"),  # Apertus
    ThinkingMarkers("<think>", "</think>"),
)


def markers_for(template_source: str | None) -> ThinkingMarkers | None:
    """The thinking markers a chat template uses, if any."""
    if not template_source:
        return None
    return next((m for m in MARKERS if m.detect(template_source)), None)


def opens_thinking(prompt_tail: str, markers: ThinkingMarkers) -> bool:
    """Whether the rendered prompt ends inside an open thinking block (the template wrote the
    opener as the start of the reply: the reply holds only the closer)."""
    tail = prompt_tail.rstrip()
    return tail.endswith(markers.opener)


class ReasoningSplit:
    """Feeds `inner` (the tool-call parser) with the answer; what is between the markers at
    the start of the reply comes out as ReasoningDelta, as it is generated."""

    def __init__(self, inner: Parser, markers: ThinkingMarkers, starts_open: bool) -> None:
        self.inner, self.markers, self.starts_open = inner, markers, starts_open
        self.cursor = Cursor()
        self._reader: Reader | None = self._read()
        self._answer = False  # the reasoning is over: text goes to `inner` as it comes

    @property
    def done(self) -> bool:
        return self.inner.done

    def feed(self, text: str) -> list[Event]:
        if self._answer:
            return self.inner.feed(text)
        self.cursor.text += text
        return self._run()

    def finish(self) -> list[Event]:
        self.cursor.closed = True
        events = self._run() if not self._answer else []
        return events + self.inner.finish()

    def _run(self) -> list[Event]:
        events: list[Event] = []
        reader = self._reader
        if reader is None:
            return events
        if advance(reader, events):
            self._reader, self._answer = None, True
            rest = self.cursor.text[self.cursor.pos:]
            if rest:
                events += self.inner.feed(rest)
        return events

    def _read(self) -> Reader:
        cur, markers = self.cursor, self.markers
        if not self.starts_open:
            if not (yield from skip_space(cur)):
                return
            start = cur.pos
            if not (yield from match(cur, markers.opener)):
                cur.pos = start  # no reasoning: the whole reply is the answer
                return
        yield from self._reasoning()
        yield from skip_space(cur)  # the answer starts after the blank line that follows

    def _reasoning(self) -> Reader:
        """ReasoningDelta up to the closer (consumed), or to the end of the reply. Whitespace
        around the reasoning is dropped; within it, it waits for the text that follows."""
        cur, closer = self.cursor, self.markers.closer
        yield from skip_space(cur)
        while True:
            text = cur.text
            k = text.find(closer, cur.pos)
            if k >= 0:
                piece = text[cur.pos:k].rstrip()
            elif cur.closed:
                piece = text[cur.pos:].rstrip()
            else:
                piece = text[cur.pos:len(text) - held_length(text, cur.pos, (closer,))].rstrip()
            if piece:
                yield ReasoningDelta(piece)
                cur.pos += len(piece)
            if k >= 0:
                cur.pos = k + len(closer)
                return
            if cur.closed:
                cur.pos = len(text)
                return
            yield NEED
