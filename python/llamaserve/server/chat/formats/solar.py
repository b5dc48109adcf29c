"""Upstage Solar Open's format: after <|begin|>assistant comes <|think|> (reasoning),
<|content|> (text) or <|tool_calls|>, each message ended by <|end|> (another may follow after
<|begin|>assistant). Calls are <|tool_call:begin|>ID<|tool_call:name|>NAME<|tool_call:args|>
{JSON}<|tool_call:end|>, the last followed by <|calls|>; the model's IDs are not kept."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, arguments_object
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.markup import NAME_LIMIT, block_of_calls
from llamaserve.server.chat.formats.reading import (Cursor, Reader, match, match_any, read_until, message_until,
                                                    text_until)
from llamaserve.server.chat.formats.tagged import closing
from llamaserve.server.chat.tools import Tool, ToolChoice

_ENDS = ("<|end|>",)
_CALLS_END = "<|calls|>"
_FORCED_ID = "call000001"  # the template asks for 10 random letters or digits; any will do


class SolarOpen(ToolFormat):
    name = "solar-open"
    markers = ("<|tool_call:begin|>", "<|tool_call:name|>")
    preserved = ("<|begin|>", "<|end|>", "<|think|>", "<|content|>", "<|tool_calls|>", "<|calls|>", "<|tool_call:begin|>",
                 "<|tool_call:name|>", "<|tool_call:args|>", "<|tool_call:end|>")
    reads_reasoning = True  # <|think|>

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        while True:
            if (yield from match(cur, "<|begin|>")):
                yield from match(cur, "assistant")
            start = cur.pos
            kind = yield from match_any(cur, ("<|think|>", "<|content|>", "<|tool_calls|>"))
            if kind == "<|tool_calls|>":
                if calls.full or (yield from block_of_calls(cur, calls, _CALLS_END, _call)):
                    return
                cur.pos = start  # no call to an offered tool: shown as text
                kind = None
            if kind is None:
                yield from text_until(cur, ())
                return
            ended = yield from message_until(cur, _ENDS, kind == "<|think|>")
            if ended is None:
                return

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"<|tool_calls|><|tool_call:begin|>{_FORCED_ID}<|tool_call:name|>{tool.name}<|tool_call:args|>",
            f"<|tool_call:end|>{_CALLS_END}"))


def _call(cur: Cursor, calls: Calls) -> Reader:
    if not (yield from match(cur, "<|tool_call:begin|>")) or \
            (yield from read_until(cur, "<|tool_call:name|>", NAME_LIMIT)) is None:
        return False
    name = yield from read_until(cur, "<|tool_call:args|>", NAME_LIMIT)
    if name is None or not calls.known(name.strip()):
        return False
    yield calls.start(name.strip())
    yield from arguments_object(cur, calls)
    yield calls.end()
    if not (yield from closing(cur, "<|tool_call:end|>")):
        raise calls.fail("is not closed by <|tool_call:end|>")
    return True
