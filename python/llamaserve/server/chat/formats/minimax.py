"""MiniMax's calls. M1: JSON call objects, one a line, in <tool_calls>. M2:
<minimax:tool_call><invoke name="n"><parameter name="p">v</parameter></invoke>...
</minimax:tool_call>. M3: the same with each tag after the token ]<]minimax[>[, a parameter's
name as its tag, and objects and arrays written as nested elements (<item> for an array's)."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, json_call
from llamaserve.server.chat.formats.grammar import wrapped_json_call_grammar
from llamaserve.server.chat.formats.markup import Markup, MarkupFormat, block_of_calls
from llamaserve.server.chat.formats.reading import Cursor, Reader
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

_M3 = "]<]minimax[>["  # M3's namespace token, before each of its tags


class MiniMaxM1(ToolFormat):
    name = "minimax-m1"
    markers = ("<beginning_of_sentence>", "<tool_calls>")

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        def block(cur: Cursor, calls: Calls) -> Reader:
            return block_of_calls(cur, calls, "</tool_calls>", json_call)
        yield from tagged_calls(cur, calls, {"<tool_calls>": block})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return wrapped_json_call_grammar(tools, choice, "<tool_calls>\n", "\n</tool_calls>")


class MiniMaxM2(MarkupFormat):
    name = "minimax-m2"
    markers = ("<minimax:tool_call>",)
    preserved = ("<minimax:tool_call>", "</minimax:tool_call>")
    markup = Markup(call_open='<invoke name="', name_close='">', key_open='<parameter name="', key_close='">',
                    value_close="</parameter>", call_close="</invoke>",
                    block=("<minimax:tool_call>", "</minimax:tool_call>"))


class MiniMaxM3(MarkupFormat):
    name = "minimax-m3"
    markers = (_M3, '<invoke name="')
    markup = Markup(call_open=_M3 + '<invoke name="', name_close='">', key_open=_M3 + "<", key_close=">",
                    value_close=_M3 + "</{key}>", call_close=_M3 + "</invoke>",
                    block=(_M3 + "<tool_call>", _M3 + "</tool_call>"), nested=_M3)
