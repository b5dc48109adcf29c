"""The fallback format, for templates whose call syntax is unknown and for templates that
cannot show tools (the system prompt then asks for a bare JSON object): a reply that is a
JSON call object or a list of them, or Python-style calls; anywhere in a reply, Hermes
<tool_call> tags or a ``` fence around such calls. Hermes' own format (Qwen 2.5/3, Hermes,
Granite 4 and others) is the tags alone."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import wrapped_json_call_grammar
from llamaserve.server.chat.formats.pythonic import emit_python_calls
from llamaserve.server.chat.formats.reading import Cursor, Reader, match_any, read_until, skip_space
from llamaserve.server.chat.formats.tagged import closing, json_call_between, json_calls, tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

_FENCE_LANGUAGES = ("json", "tool_call", "tool_code", "python")


def _fenced(cur: Cursor, calls: Calls) -> Reader:
    """After ```: an optional language, then JSON or Python-style calls, then ```."""
    yield from match_any(cur, _FENCE_LANGUAGES)
    if not (yield from skip_space(cur)):
        return False
    if cur.peek() in "{[":
        start = cur.pos
        if (yield from json_calls(cur, calls)):
            if not (yield from closing(cur, "```")):
                raise calls.fail("is not closed by ```")
            return True
        cur.pos = start
    body = yield from read_until(cur, "```")
    return (yield from emit_python_calls(body if body is not None else cur.text[cur.pos:], calls))


def _python_start(cur: Cursor, calls: Calls) -> Reader:
    """Whether the reply opens with a call to a tool in Python syntax (`name(` or `[name(`)."""
    openers = [prefix + name + "(" for name in calls.names for prefix in ("", "[")]
    start = cur.pos
    found = yield from match_any(cur, openers)
    cur.pos = start
    return found is not None


class GenericJson(ToolFormat):
    name = "generic"

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        if not (yield from skip_space(cur)):
            return
        start = cur.pos
        if (yield from _python_start(cur, calls)):
            while not cur.closed:  # Python arguments parse only whole: wait for the end
                yield from read_until(cur, "\0")
            if (yield from emit_python_calls(cur.text[start:], calls)):
                return
            cur.pos = start
        elif cur.peek() in "{[":
            if (yield from json_calls(cur, calls)):
                if calls.full:
                    return
            else:
                cur.pos = start
        yield from tagged_calls(cur, calls, {"<tool_call>": json_call_between("</tool_call>"), "```": _fenced})


class Hermes(ToolFormat):
    """<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>, one tag per call."""

    name = "hermes"
    markers = ("<tool_call>",)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {"<tool_call>": json_call_between("</tool_call>")})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return wrapped_json_call_grammar(tools, choice, "<tool_call>\n", "\n</tool_call>")
