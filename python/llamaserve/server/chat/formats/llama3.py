"""Llama 3.x's calls: a reply that is a JSON object {"name": ..., "parameters": {...}} (or a
few of them, separated by ";" or whitespace), and anything after <|python_tag|>: such an
object, a built-in tool's `brave_search.call(query="...")`, or code for the code tool."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, json_call
from llamaserve.server.chat.formats.grammar import json_call_grammar
from llamaserve.server.chat.formats.json_bodies import code_arguments, code_tool
from llamaserve.server.chat.formats.literals import PYTHON, members
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, match_any, skip_space
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

PYTHON_TAG = "<|python_tag|>"
_CALL = ".call("  # a built-in tool's call: brave_search.call(query="...")


def calls_in_a_row(cur: Cursor, calls: Calls) -> Reader:
    """JSON call objects, separated by ";" or whitespace; False if the first is no call (then
    nothing was read). A JSON object that is no call ends them, left unread."""
    made = False
    while cur.peek() == "{" and not calls.full:
        start = cur.pos
        if not (yield from json_call(cur, calls)):
            cur.pos = start
            break
        made = True
        if not (yield from skip_space(cur)) or ((yield from match(cur, ";")) and not (yield from skip_space(cur))):
            break
    return made


def python_tag(cur: Cursor, calls: Calls) -> Reader:
    """The body after <|python_tag|> (Llama 3.1, Functionary 3.1): JSON calls; a built-in
    tool's `name.call(k="v")`; else, when a code tool is offered, code for it."""
    if not (yield from skip_space(cur)):
        return False
    if cur.peek() == "{":
        return (yield from calls_in_a_row(cur, calls))
    built_in = yield from match_any(cur, [name + _CALL for name in calls.names])
    if built_in is not None:
        yield calls.start(built_in.removesuffix(_CALL))
        yield from members(cur, calls, PYTHON, ")", "=")
        yield calls.end()
        return True
    tool = code_tool(calls)
    if tool is None:
        return False
    yield calls.start(tool)
    yield from code_arguments(cur, calls)
    yield calls.end()
    return True


class Llama3(ToolFormat):
    name = "llama3"
    markers = ('"parameters": dictionary of argument name and its value',)
    preserved = (PYTHON_TAG,)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        if not (yield from skip_space(cur)):
            return
        if (yield from calls_in_a_row(cur, calls)) and calls.full:
            return
        yield from tagged_calls(cur, calls, {PYTHON_TAG: python_tag})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return json_call_grammar(tools, choice, arguments_key="parameters")
