"""Calls whose tags carry attributes: DeepSeek V3.2/V4's DSML (<｜DSML｜invoke name="N">
<｜DSML｜parameter name="K" string="true">V</｜DSML｜parameter></｜DSML｜invoke>) and Kimi K3's
XTML (<|open|>call tool="N" index="1"<|sep|><|open|>argument key="K" type="string"<|sep|>V
<|close|>argument<|sep|><|close|>call<|sep|>). The tool's name and each argument's key and
kind are attributes; a string argument's value is raw text, streamed as a JSON string, and
another's is JSON (a string when it holds none). One `Attributed` table per family."""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from llamaserve.server.chat.formats.calls import Calls, arguments_object
from llamaserve.server.chat.formats.json_bodies import closed_by
from llamaserve.server.chat.formats.markup import NAME_LIMIT, escaped, typed
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, read_until, skip_space, stream_until

_ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')


@dataclass(frozen=True)
class Attributed:
    """How one family spells a call's tags."""

    call_open: str  # before a call's attributes
    argument_open: str  # before an argument's attributes
    header_close: str  # after a tag's attributes
    argument_close: str
    call_close: str
    tool: str  # the call's attribute that names its tool
    key: str  # the argument's attribute that names it
    string: tuple[str, str]  # the attribute, and its value, of a string argument
    json: tuple[str, str] | None = None  # tags around arguments written as one JSON object instead


def attributes(header: str) -> dict[str, str]:
    return {key: html.unescape(value) for key, value in _ATTRIBUTE.findall(header)}


def attributed_call(cur: Cursor, calls: Calls, tags: Attributed) -> Reader:
    """One call (its opening tag next) through its closing tag; a reply that ends instead
    counts as closed. False, having emitted nothing, if it is no call to an offered tool."""
    if not (yield from match(cur, tags.call_open)):
        return False
    header = yield from read_until(cur, tags.header_close, NAME_LIMIT)
    name = attributes(header).get(tags.tool) if header is not None else None
    if not calls.known(name):
        return False
    yield calls.start(name)
    if tags.json and (yield from skip_space(cur)) and (yield from match(cur, tags.json[0])):
        if (yield from read_until(cur, tags.header_close, NAME_LIMIT)) is None:
            raise calls.fail(f"has no {tags.header_close} after {tags.json[0]}")
        yield from arguments_object(cur, calls)
        yield calls.end()
        yield from closed_by(cur, calls, (tags.json[1], tags.call_close))
        return True
    count = 0
    while (yield from skip_space(cur)) and not (yield from match(cur, tags.call_close)):
        if not (yield from match(cur, tags.argument_open)):
            raise calls.fail(f"has text where an argument or {tags.call_close} belongs")
        header = yield from read_until(cur, tags.header_close, NAME_LIMIT)
        found = attributes(header) if header is not None else {}
        if not found.get(tags.key):
            raise calls.fail("has an argument without a name")
        lead = ("{" if count == 0 else ", ") + json.dumps(found[tags.key], ensure_ascii=False) + ": "
        if found.get(tags.string[0]) == tags.string[1]:
            yield calls.arguments(lead + '"')
            if (yield from stream_until(cur, (tags.argument_close,), lambda p: calls.arguments(escaped(p)))) is None:
                raise calls.fail("ended inside an argument")
            yield calls.arguments('"')
        else:
            text = yield from read_until(cur, tags.argument_close)
            if text is None:
                raise calls.fail("ended inside an argument")
            yield calls.arguments(lead + typed(text, None))
        count += 1
    yield calls.arguments("}" if count else "{}")
    yield calls.end()
    return True
