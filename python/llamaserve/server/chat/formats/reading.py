"""Reading a reply that is still being generated.

A format's reader is a generator over a Cursor (the reply so far and a read position). It
yields events as soon as they are certain, and NEED when nothing more can be decided until
more text arrives; the steps below are generators too (`ok = yield from match(cur, "<x>")`),
so a reader is written like an ordinary recursive-descent parser and still resumes piece by
piece. Text is held back only while it may still be the start of a marker.
"""
from __future__ import annotations

import json
from collections.abc import Generator, Iterable
from typing import Any

from llamaserve.server.chat.formats.events import ReasoningDelta, TextDelta
from llamaserve.server.chat.formats.json_scan import JsonScanner, JsonSyntaxError

NEED: Any = object()  # yielded: wait for more of the reply
Reader = Generator[Any, None, Any]  # yields Event | NEED, returns the step's result

_COMPACT_AT = 1 << 14


class Cursor:
    __slots__ = ("text", "pos", "closed", "dropped")

    def __init__(self) -> None:
        self.text = ""
        self.pos = 0
        self.closed = False  # the reply has ended: nothing more will come
        self.dropped = ""  # the whitespace text_until dropped before the marker it found

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def startswith(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def compact(self) -> None:
        """Forget what was read (only where no reader keeps a position to return to)."""
        if self.pos >= _COMPACT_AT:
            self.text = self.text[self.pos:]
            self.pos = 0


def advance(reader: Reader, events: list[Any]) -> bool:
    """Run a reader until it needs more of the reply, its events appended to `events` (they
    are there if it raises); True once it has read all it ever will."""
    try:
        while (item := next(reader)) is not NEED:
            events.append(item)
    except StopIteration:
        return True
    return False


def wait(cur: Cursor, n: int = 1) -> Reader:
    """Until n characters are unread; False if the reply ended first."""
    while len(cur.text) - cur.pos < n:
        if cur.closed:
            return False
        yield NEED
    return True


def skip_space(cur: Cursor) -> Reader:
    """Skip whitespace; False if the reply ended."""
    while True:
        text, i = cur.text, cur.pos
        while i < len(text) and text[i].isspace():
            i += 1
        cur.pos = i
        if i < len(text):
            return True
        if cur.closed:
            return False
        yield NEED


def match(cur: Cursor, literal: str) -> Reader:
    """Consume `literal` if the reply continues with it; False (nothing consumed) if not."""
    while True:
        have = cur.text[cur.pos:cur.pos + len(literal)]
        if not literal.startswith(have):
            return False
        if len(have) == len(literal):
            cur.pos += len(literal)
            return True
        if cur.closed:
            return False
        yield NEED


def match_any(cur: Cursor, literals: Iterable[str]) -> Reader:
    """The first of `literals` the reply continues with (consumed), else None."""
    options = list(literals)
    while True:
        undecided = False
        for literal in options:
            have = cur.text[cur.pos:cur.pos + len(literal)]
            if have == literal:
                cur.pos += len(literal)
                return literal
            undecided = undecided or literal.startswith(have)
        if not undecided or cur.closed:
            return None
        yield NEED


def held_length(text: str, start: int, markers: Iterable[str]) -> int:
    """How many characters at the end of text[start:] may begin one of `markers`."""
    best = 0
    size = len(text) - start
    for marker in markers:
        for k in range(min(len(marker) - 1, size), best, -1):
            if text.endswith(marker[:k]):
                best = k
                break
    return best


def earliest(text: str, start: int, markers: Iterable[str]) -> tuple[str | None, int]:
    """The marker that occurs first in text[start:], and where; (None, -1) if none does."""
    found, at = None, -1
    for marker in markers:
        k = text.find(marker, start)
        if k >= 0 and (at < 0 or k < at):
            found, at = marker, k
    return found, at


def text_until(cur: Cursor, markers: tuple[str, ...], keep_space_at_end: bool = True) -> Reader:
    """Emit the reply as text up to the earliest of `markers` (consumed and returned), or to
    its end (None). Whitespace just before a marker is dropped; trailing whitespace is held
    until text follows it, and at the end kept only if `keep_space_at_end`."""
    while True:
        text, start = cur.text, cur.pos
        found, at = earliest(text, start, markers)
        if found is not None:
            before = text[start:at].rstrip()
            if before:
                yield TextDelta(before)
            cur.dropped = text[start + len(before):at]
            cur.pos = at + len(found)
            return found
        if cur.closed:
            rest = text[start:] if keep_space_at_end else text[start:].rstrip()
            if rest:
                yield TextDelta(rest)
            cur.pos = len(text)
            return None
        end = len(text) - held_length(text, start, markers)
        sure = text[start:end].rstrip()
        if sure:
            yield TextDelta(sure)
            cur.pos = start + len(sure)
        cur.compact()
        yield NEED


def read_until(cur: Cursor, marker: str, limit: int | None = None) -> Reader:
    """The text up to `marker` (consumed), or None if the reply ended first (or, with
    `limit`, if more than `limit` characters came without it: a header, a name)."""
    while True:
        k = cur.text.find(marker, cur.pos)
        if k >= 0 and (limit is None or k - cur.pos <= limit):
            found = cur.text[cur.pos:k]
            cur.pos = k + len(marker)
            return found
        if cur.closed or (limit is not None and len(cur.text) - cur.pos > limit + len(marker)):
            return None
        yield NEED


def stream_until(cur: Cursor, markers: tuple[str, ...], emit: Any) -> Reader:
    """Yield emit(piece) for the reply's text up to the earliest of `markers` (consumed and
    returned) as it arrives, holding back only what may begin one; None if the reply ended
    first (all of it emitted). A string parameter's value, reasoning: nothing is stripped.
    Forgets what was read, so only for readers that no longer return to a position."""
    while True:
        text, start = cur.text, cur.pos
        found, at = earliest(text, start, markers)
        end = at if found is not None else len(text) if cur.closed else len(text) - held_length(text, start, markers)
        if end > start:
            yield emit(text[start:end])
        if found is not None:
            cur.pos = at + len(found)
            return found
        cur.pos = end
        if cur.closed:
            return None
        cur.compact()
        yield NEED


def message_until(cur: Cursor, ends: tuple[str, ...], reasoning: bool) -> Reader:
    """A channel's message up to the earliest of `ends` (returned; None if the reply ended):
    reasoning streamed as it is, or text (whitespace before the end dropped)."""
    if reasoning:
        return (yield from stream_until(cur, ends, ReasoningDelta))
    return (yield from text_until(cur, ends))


def json_string(cur: Cursor) -> Reader:
    """A JSON string at the cursor, decoded; None (cursor unspecified) if there is none."""
    if not (yield from wait(cur)) or cur.peek() != '"':
        return None
    raw = yield from json_value(cur)
    return None if raw is None else json.loads(raw)


def json_value(cur: Cursor, emit: Any = None) -> Reader:
    """Read one JSON value at the cursor; returns its text, or None if it is not JSON (or the
    reply ended inside it). `emit(piece)` -> event, when given, is yielded for each piece as
    it is read (arguments streamed while they are generated)."""
    scanner, start = JsonScanner(), cur.pos
    while True:
        read_from = cur.pos
        try:
            end = scanner.scan(cur.text, cur.pos)
        except JsonSyntaxError:
            return None
        stop = end if end >= 0 else len(cur.text)
        if emit is not None and stop > read_from:
            yield emit(cur.text[read_from:stop])
        cur.pos = stop
        if end >= 0:
            return cur.text[start:end]
        if cur.closed:
            return cur.text[start:] if scanner.finish() else None
        yield NEED
