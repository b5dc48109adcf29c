"""LFM2 and LFM2.5's calls: Python calls in a list between their own tokens,
<|tool_call_start|>[get_weather(city='Paris', days=3)]<|tool_call_end|>, JSON's true, false
and null allowed. A forced call is written with JSON values (valid Python too); JSON call
objects between the tokens are read as well."""
from __future__ import annotations

import re
from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_parameter_grammar
from llamaserve.server.chat.formats.literals import PYTHON, members
from llamaserve.server.chat.formats.markup import NAME_LIMIT
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, read_until, skip_space
from llamaserve.server.chat.formats.tagged import closing, json_calls, tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

_START, _END = "<|tool_call_start|>", "<|tool_call_end|>"
_NAME = re.compile(r"[A-Za-z_][\w.-]*\Z")


class Lfm2(ToolFormat):
    name = "lfm2"
    preserved = ("<|tool_call_start|>", "<|tool_call_end|>")

    @classmethod
    def detect(cls, source: str) -> bool:
        """LFM2 lists tools between <|tool_list_start|> tokens, LFM2.5 after "List of tools: [";
        neither template shows a call."""
        return "<|tool_list_start|>" in source or "List of tools: [" in source

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {_START: _body})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_parameter_grammar(tools, choice, lambda tool: (f"{_START}[{tool.name}(", f")]{_END}"),
                                     lambda key: (f"{key}=", ""), separator=", ", raw_strings=False)


def _body(cur: Cursor, calls: Calls) -> Reader:
    if not (yield from skip_space(cur)):
        return False
    start = cur.pos
    json_list = (yield from match(cur, "[")) and (yield from skip_space(cur)) and cur.peek() == "{"
    cur.pos = start
    if not (yield from (json_calls(cur, calls) if cur.peek() == "{" or json_list else python_calls(cur, calls))):
        return False
    if calls.full:  # parallel_tool_calls false: the list's other calls are not read
        yield from read_until(cur, _END)
    elif not (yield from closing(cur, _END)):
        raise calls.fail(f"is not closed by {_END}")
    return True


def python_calls(cur: Cursor, calls: Calls) -> Reader:
    """`[name(a=1, b='x'), ...]`, or one call without the list; False, having emitted
    nothing, if the first is no call to an offered tool."""
    listed = yield from match(cur, "[")
    made = 0
    while True:
        if made:
            if not listed or not (yield from skip_space(cur)) or (yield from match(cur, "]")):
                return True
            if not ((yield from match(cur, ",")) and (yield from skip_space(cur))):
                raise calls.fail("list has text where ',' or ']' belongs")
            if (yield from match(cur, "]")):
                return True
        name = yield from read_until(cur, "(", NAME_LIMIT)
        name = name.strip() if name is not None else None
        if not (name and _NAME.match(name) and calls.known(name)):
            if made == 0:
                return False
            raise calls.fail("list holds something other than a call to an offered tool")
        yield calls.start(name)
        yield from members(cur, calls, PYTHON, ")", "=")
        yield calls.end()
        made += 1
        if calls.full:
            return True
