"""Gemma 4's calls: <|tool_call>call:name{key:value,...}<tool_call|>, strings between <|"|>
marks, keys bare. A forced call is written with a JSON object as its arguments, which the
reader takes too."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.literals import GEMMA, members
from llamaserve.server.chat.formats.markup import NAME_LIMIT
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, read_until
from llamaserve.server.chat.formats.tagged import closing, tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

_OPEN, _CLOSE = "<|tool_call>", "<tool_call|>"


class Gemma4(ToolFormat):
    name = "gemma4"
    markers = ("'<|tool_call>call:'",)
    preserved = ("<|tool_call>", "<tool_call|>")

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {_OPEN: _call})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (f"{_OPEN}call:{tool.name}", _CLOSE))


def _call(cur: Cursor, calls: Calls) -> Reader:
    if not (yield from match(cur, "call:")):
        return False
    name = yield from read_until(cur, "{", NAME_LIMIT)
    if name is None or not calls.known(name.strip()):
        return False
    yield calls.start(name.strip())
    yield from members(cur, calls, GEMMA, "}", ":")
    yield calls.end()
    if not (yield from closing(cur, _CLOSE)):
        raise calls.fail(f"is not closed by {_CLOSE}")
    return True
