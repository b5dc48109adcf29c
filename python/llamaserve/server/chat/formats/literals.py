"""Arguments written as literals of another language, read as they are generated and
emitted as JSON text: Python keyword arguments (LFM2's calls) and Gemma 4's call syntax
({key:<|"|>text<|"|>,n:1}). Strings stream in pieces; nothing is evaluated."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.json_scan import MAX_DEPTH
from llamaserve.server.chat.formats.markup import NAME_LIMIT, escaped
from llamaserve.server.chat.formats.reading import (NEED, Cursor, Reader, match, match_any, read_until, skip_space,
                                                    stream_until, wait)

SCALAR_LIMIT = 64  # a number or a word is short
_SCALAR_END = re.compile(r"[\s,\])}]")
_BARE_KEY = re.compile(r"[^\s:=,{}\[\]()'\"<>]+\Z")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
# The JSON text of each one-character escape after a backslash ("\\\n" continues a line).
_ESCAPES = {"n": "\\n", "t": "\\t", "r": "\\r", "b": "\\b", "f": "\\f", "\\": "\\\\", "'": "'", '"': '\\"',
            "/": "/", "0": "\\u0000", "a": "\\u0007", "v": "\\u000b", "\n": ""}


@dataclass(frozen=True)
class Dialect:
    quotes: tuple[str, ...]  # string delimiters with backslash escapes
    raw_quotes: tuple[str, ...]  # string delimiters without escapes
    words: Mapping[str, str]  # bare words and the JSON they stand for


_JSON_WORDS = {"true": "true", "false": "false", "null": "null"}
PYTHON = Dialect(("'", '"'), (), {"True": "true", "False": "false", "None": "null", **_JSON_WORDS})
GEMMA = Dialect(('"',), ('<|"|>',), _JSON_WORDS)  # JSON's own strings too: a forced call is JSON


def members(cur: Cursor, calls: Calls, dialect: Dialect, close: str, assign: str, depth: int = 1,
            lead: str = "") -> Reader:
    """Emit `lead` (the JSON before it) and `key<assign>value, ...<close>` (its opening
    bracket read) as a JSON object."""
    if depth > MAX_DEPTH:
        raise calls.fail(f"nests its arguments deeper than {MAX_DEPTH} levels")
    pending, count = lead + "{", 0
    while (yield from _next_item(cur, calls, close, count)):
        key = yield from _key(cur, dialect, assign)
        if key is None:
            raise calls.fail("has an argument without a name")
        separator = ", " if count else ""
        yield from value(cur, calls, dialect, depth, f"{pending}{separator}{json.dumps(key, ensure_ascii=False)}: ")
        pending, count = "", count + 1
    yield calls.arguments(pending + "}")


def _items(cur: Cursor, calls: Calls, dialect: Dialect, close: str, depth: int, lead: str) -> Reader:
    if depth > MAX_DEPTH:
        raise calls.fail(f"nests its arguments deeper than {MAX_DEPTH} levels")
    pending, count = lead + "[", 0
    while (yield from _next_item(cur, calls, close, count)):
        yield from value(cur, calls, dialect, depth, pending + (", " if count else ""))
        pending, count = "", count + 1
    yield calls.arguments(pending + "]")


def _next_item(cur: Cursor, calls: Calls, close: str, count: int) -> Reader:
    """Whether another item follows (its comma read) before `close` (read; a trailing comma
    allowed)."""
    if not (yield from skip_space(cur)):
        raise calls.fail("ended inside its arguments")
    if (yield from match(cur, close)):
        return False
    if count and not ((yield from match(cur, ",")) and (yield from skip_space(cur))):
        raise calls.fail(f"has text where ',' or {close!r} belongs")
    return not (count and (yield from match(cur, close)))


def _key(cur: Cursor, dialect: Dialect, assign: str) -> Reader:
    """A key (quoted, or a bare word) and the `assign` after it; None if there is none."""
    quote = yield from match_any(cur, dialect.quotes + dialect.raw_quotes)
    if quote is not None:
        key = yield from read_until(cur, quote, NAME_LIMIT)
        if key is None or not (yield from skip_space(cur)) or not (yield from match(cur, assign)):
            return None
        return key
    key = yield from read_until(cur, assign, NAME_LIMIT)
    return key.strip() if key is not None and _BARE_KEY.match(key.strip()) else None


def value(cur: Cursor, calls: Calls, dialect: Dialect, depth: int, lead: str = "") -> Reader:
    """Emit `lead` (the JSON before it) and the value at the cursor as JSON."""
    if not (yield from skip_space(cur)):
        raise calls.fail("ended inside its arguments")
    quote = yield from match_any(cur, dialect.quotes + dialect.raw_quotes)
    if quote in dialect.raw_quotes:
        yield calls.arguments(lead + '"')
        if (yield from stream_until(cur, (quote,), lambda piece: calls.arguments(escaped(piece)))) is None:
            raise calls.fail("ended inside a string")
        yield calls.arguments('"')
    elif quote is not None:
        yield from _escaped_string(cur, calls, quote, lead)
    elif (yield from match(cur, "{")):
        yield from members(cur, calls, dialect, "}", ":", depth + 1, lead)
    elif (opener := (yield from match_any(cur, ("[", "(")))) is not None:
        yield from _items(cur, calls, dialect, "]" if opener == "[" else ")", depth + 1, lead)
    else:
        yield calls.arguments(lead + (yield from _scalar(cur, calls, dialect)))


def _scalar(cur: Cursor, calls: Calls, dialect: Dialect) -> Reader:
    """A number or a word, as JSON."""
    while True:
        text, start = cur.text, cur.pos
        end = _SCALAR_END.search(text, start, start + SCALAR_LIMIT + 1)
        if end is not None or cur.closed or len(text) - start > SCALAR_LIMIT:
            break
        yield NEED
    token = text[start:end.start() if end is not None else start + SCALAR_LIMIT]
    cur.pos = start + len(token)
    if token in dialect.words:
        return dialect.words[token]
    if _JSON_NUMBER.match(token):
        return token
    try:
        number = int(token, 0)
    except ValueError:
        try:
            number = float(token)
        except ValueError:
            raise calls.fail(f"holds a value that is not a literal: {token[:20]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise calls.fail("holds a number JSON cannot write")
    return json.dumps(number)


def _escaped_string(cur: Cursor, calls: Calls, quote: str, lead: str) -> Reader:
    """Emit `lead` and a string with backslash escapes (its opening quote read) as a JSON
    string."""
    yield calls.arguments(lead + '"')
    while True:
        text, start = cur.text, cur.pos
        stops = [k for k in (text.find(quote, start), text.find("\\", start)) if k >= 0]
        stop = min(stops) if stops else len(text)
        if stop > start:
            yield calls.arguments(escaped(text[start:stop]))
        cur.pos = stop
        if not stops:
            if cur.closed:
                raise calls.fail("ended inside a string")
            cur.compact()
            yield NEED
        elif text.startswith(quote, stop):
            cur.pos += len(quote)
            yield calls.arguments('"')
            return
        else:
            piece = yield from _escape(cur, calls)
            if piece:
                yield calls.arguments(piece)


def _escape(cur: Cursor, calls: Calls) -> Reader:
    """The JSON text of the escape at the cursor (a backslash and what it escapes)."""
    if not (yield from wait(cur, 2)):
        raise calls.fail("ended inside a string")
    kind = cur.text[cur.pos + 1]
    if kind in _ESCAPES:
        cur.pos += 2
        return _ESCAPES[kind]
    size = {"x": 2, "u": 4, "U": 8}.get(kind)
    if size is None:  # not an escape: the backslash is a character
        cur.pos += 2
        return escaped("\\" + kind)
    if not (yield from wait(cur, 2 + size)):
        raise calls.fail("ended inside a string")
    digits = cur.text[cur.pos + 2:cur.pos + 2 + size]
    code = int(digits, 16) if _HEX.match(digits) else -1
    if code < 0 or code > 0x10FFFF or (kind != "u" and 0xD800 <= code <= 0xDFFF):
        raise calls.fail("holds a bad escape in a string")
    cur.pos += 2 + size
    return "\\u" + digits if kind == "u" else escaped(chr(code))
