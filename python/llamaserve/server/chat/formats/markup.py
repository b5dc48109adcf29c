"""Calls written as XML-like markup: a call's name, then parameters whose values are text,
typed by the tool's schema. A string parameter's text is its value, streamed as JSON string
pieces while it is generated; any other parameter's text is the JSON it holds (sent once
complete), or a string when it holds none. One `Markup` table per family says how its tags
are spelled; the readers and the grammar that forces a call are the same for all."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_parameter_grammar, properties_of, string_valued
from llamaserve.server.chat.formats.json_scan import MAX_DEPTH, JsonScanner, JsonSyntaxError
from llamaserve.server.chat.formats.reading import (NEED, Cursor, Reader, match, read_until, skip_space, stream_until,
                                                    wait)
from llamaserve.server.chat.formats.tagged import Body, tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

NAME_LIMIT = 256  # a tool's or a parameter's name is short; longer text after an opening tag is no call
_PYTHON_WORDS = {"True": "true", "False": "false", "None": "null"}


@dataclass(frozen=True)
class Markup:
    """How one family spells a call."""

    call_open: str  # before the tool's name: "<function=", '<invoke name="', "<tool_call>"
    name_close: str  # after the name ("" where the parameters follow at once)
    key_open: str  # before a parameter's name
    key_close: str  # after it
    value_close: str  # after a value; "{key}" stands for the parameter's name
    call_close: str  # after the last parameter
    value_open: str = ""  # before a value, after optional whitespace
    block: tuple[str, str] | None = None  # opening and closing tags around one or more calls
    bare_calls: bool = False  # a call may also come without its block
    strip_newline: bool = False  # a value's first and last newline are layout, not value
    cdata: bool = False  # a value may be wrapped in <![CDATA[...]]>
    nested: str | None = None  # objects and arrays written as elements, each tag after this prefix

    def bodies(self) -> dict[str, Body]:
        """tagged_calls' bodies: a block of calls, and a call alone where one may come so."""
        def one(cur: Cursor, calls: Calls) -> Reader:
            return markup_call(cur, calls, self)

        def block(cur: Cursor, calls: Calls) -> Reader:
            return markup_block(cur, calls, self)

        if self.block is None:
            return {self.call_open: one}
        return {self.block[0]: block, **({self.call_open: one} if self.bare_calls else {})}

    def grammar(self, tools: Sequence[Tool], choice: ToolChoice, lead: str = "") -> str:
        """GBNF of one call in this spelling, a tag or value on each line, after `lead`
        ("{name}" in it stands for the tool's name)."""
        block_open, block_close = (self.block[0] + "\n", "\n" + self.block[1]) if self.block else ("", "")
        newline = "\n" if self.strip_newline else ""

        def call(tool: Tool) -> tuple[str, str]:
            return (lead.replace("{name}", tool.name) + f"{block_open}{self.call_open}{tool.name}{self.name_close}\n",
                    self.call_close + block_close)

        def parameter(key: str) -> tuple[str, str]:
            return (f"{self.key_open}{key}{self.key_close}{self.value_open}{newline}",
                    f"{newline}{self.value_close.replace('{key}', key)}\n")
        return per_parameter_grammar(tools, choice, call, parameter)


def markup_block(cur: Cursor, calls: Calls, markup: Markup) -> Reader:
    """The calls after a block's opening tag, through its closing one."""
    assert markup.block is not None

    def one(cur: Cursor, calls: Calls) -> Reader:
        return (yield from match(cur, markup.call_open)) and (yield from markup_call(cur, calls, markup))
    return (yield from block_of_calls(cur, calls, markup.block[1], one))


def block_of_calls(cur: Cursor, calls: Calls, closer: str, one: Body) -> Reader:
    """Calls, each read by `one`, through `closer` (a reply that ends instead counts as
    closed). False, having emitted nothing, if the first is no call to an offered tool."""
    made = 0
    while True:
        if not (yield from skip_space(cur)):
            return made > 0
        if made and (yield from match(cur, closer)):
            return True
        if calls.full:  # parallel_tool_calls false: the rest of the block is not read
            yield from read_until(cur, closer)
            return True
        if not (yield from one(cur, calls)):
            if made == 0:
                return False
            raise calls.fail(f"block holds something other than a call before {closer}")
        made += 1


def markup_call(cur: Cursor, calls: Calls, markup: Markup) -> Reader:
    """One call after its opening text, through its closing tag (a reply that ends instead
    counts as closed). False, having emitted nothing, if it is no call to an offered tool."""
    name = yield from _name(cur, markup)
    if not calls.known(name):
        return False
    yield calls.start(name)
    properties = properties_of(calls.schemas.get(name))
    members = 0
    while (yield from skip_space(cur)) and not (yield from match(cur, markup.call_close)):
        if not (yield from match(cur, markup.key_open)):
            raise calls.fail(f"has text where a parameter or {markup.call_close} belongs")
        key = yield from read_until(cur, markup.key_close, NAME_LIMIT)
        if not key:
            raise calls.fail("has a parameter without a name")
        if markup.value_open and not ((yield from skip_space(cur)) and (yield from match(cur, markup.value_open))):
            raise calls.fail(f"has a parameter without {markup.value_open}")
        lead = ("{" if members == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": "
        yield from _value(cur, calls, markup, markup.value_close.replace("{key}", key), properties.get(key), lead)
        members += 1
    yield calls.arguments("}" if members else "{}")
    yield calls.end()
    return True


def _name(cur: Cursor, markup: Markup) -> Reader:
    """The tool's name: up to `name_close`, a tag or a line end (or the end of the reply)."""
    stops = tuple(s for s in (markup.name_close, "<", "\n") if s)
    while True:
        text, start = cur.text, cur.pos
        ends = [k for k in (text.find(s, start, start + NAME_LIMIT + len(s)) for s in stops) if k >= 0]
        if ends or cur.closed:
            end = min(ends) if ends else len(text)
            cur.pos = end
            break
        if len(text) - start > NAME_LIMIT:
            return None
        yield NEED
    name = text[start:end].strip()
    if markup.name_close and not ((yield from skip_space(cur)) and (yield from match(cur, markup.name_close))):
        return None
    return name


def _value(cur: Cursor, calls: Calls, markup: Markup, closer: str, schema: Any, lead: str) -> Reader:
    """Emit `lead` (the JSON before it) and one parameter's value as JSON, reading through
    `closer`."""
    if markup.cdata and (yield from match(cur, "<![CDATA[")):
        yield from _text_value(cur, calls, "]]>", schema, False, lead)
        if not ((yield from skip_space(cur)) and (yield from match(cur, closer))):
            raise calls.fail(f"has a parameter's CDATA not followed by {closer}")
    elif markup.nested and (yield from _element_follows(cur, markup.nested)):
        value = yield from _elements(cur, calls, markup.nested, closer, schema, 1)
        yield calls.arguments(lead + json.dumps(value, ensure_ascii=False))
    else:
        yield from _text_value(cur, calls, closer, schema, markup.strip_newline, lead)


def _text_value(cur: Cursor, calls: Calls, closer: str, schema: Any, strip_newline: bool, lead: str) -> Reader:
    if strip_newline:
        if not (yield from wait(cur)):
            raise calls.fail("ended inside a parameter")
        if cur.peek() == "\n":
            cur.pos += 1
    if string_valued(schema):
        yield calls.arguments(lead + '"')
        closers = ("\n" + closer, closer) if strip_newline else (closer,)
        if (yield from stream_until(cur, closers, lambda piece: calls.arguments(escaped(piece)))) is None:
            raise calls.fail("ended inside a parameter")
        yield calls.arguments('"')
        return
    text = yield from read_until(cur, closer)
    if text is None:
        raise calls.fail("ended inside a parameter")
    if strip_newline and text.endswith("\n"):
        text = text[:-1]
    yield calls.arguments(lead + typed(text, schema))


def escaped(piece: str) -> str:
    """A piece of a string as it reads inside a JSON string."""
    return json.dumps(piece, ensure_ascii=False)[1:-1]


def typed(text: str, schema: Any) -> str:
    """A parameter's text as JSON: a string parameter's as a string; another's as the JSON
    it holds (True, False and None as Python writes them: templates print values with
    Jinja's `string`), or as a string when it holds none."""
    if not string_valued(schema):
        stripped = text.strip()
        if stripped in _PYTHON_WORDS:
            return _PYTHON_WORDS[stripped]
        try:
            scanner = JsonScanner()
            end = scanner.scan(stripped, 0)
            if stripped and (end == len(stripped) or (end < 0 and scanner.finish())):
                return stripped
        except JsonSyntaxError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _element_follows(cur: Cursor, prefix: str) -> Reader:
    """Whether an opening element (`prefix` then a tag, not a closing one) is next."""
    start = cur.pos
    opening = (yield from match(cur, prefix + "<")) and not (yield from match(cur, "/"))
    cur.pos = start
    return opening


def _elements(cur: Cursor, calls: Calls, prefix: str, closer: str, schema: Any, depth: int) -> Reader:
    """The value of an element whose content is elements (MiniMax M3), through `closer`:
    an array when they are <item>s (or its schema says so), else an object."""
    if depth > MAX_DEPTH:
        raise calls.fail(f"nests parameters deeper than {MAX_DEPTH} levels")
    schema = schema if isinstance(schema, dict) else {}
    properties = properties_of(schema)
    children: list[tuple[str, Any]] = []
    while True:
        if not (yield from skip_space(cur)):
            raise calls.fail("ended inside a parameter")
        if (yield from match(cur, closer)):
            break
        tag = (yield from read_until(cur, ">", NAME_LIMIT)) if (yield from match(cur, prefix + "<")) else None
        if not tag or tag.startswith("/"):
            raise calls.fail(f"has text where an element or {closer} belongs")
        child = schema.get("items") if tag == "item" else properties.get(tag)
        child_closer = f"{prefix}</{tag}>"
        if (yield from _element_follows(cur, prefix)):
            value = yield from _elements(cur, calls, prefix, child_closer, child, depth + 1)
        else:
            text = yield from read_until(cur, child_closer)
            if text is None:
                raise calls.fail("ended inside a parameter")
            value = json.loads(typed(text, child))
        children.append((tag, value))
    if schema.get("type") == "array" or (schema.get("type") is None and children
                                          and all(tag == "item" for tag, _ in children)):
        return [value for _, value in children]
    return dict(children)


class MarkupFormat(ToolFormat):
    """A family whose calls are markup anywhere in the reply's text, spelled by `markup`."""

    markup: ClassVar[Markup]

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, self.markup.bodies())

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return self.markup.grammar(tools, choice)
