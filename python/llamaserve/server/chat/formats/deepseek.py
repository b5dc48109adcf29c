"""DeepSeek R1's and V3's calls, <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```
<｜tool▁call▁end｜>, and V3.1's, <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>, all
inside <｜tool▁calls▁begin｜>...<｜tool▁calls▁end｜>. Either is read whichever template it is."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.json_bodies import named_call, section_bodies
from llamaserve.server.chat.formats.markup import NAME_LIMIT
from llamaserve.server.chat.formats.reading import Cursor, Reader, read_until
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

SECTION = ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
_FENCED = named_call("\n", CALL_END, fence=True)  # after "function<｜tool▁sep｜>"
_BARE = named_call(SEP, CALL_END)


def _call(cur: Cursor, calls: Calls) -> Reader:
    start = cur.pos
    kind = yield from read_until(cur, SEP, NAME_LIMIT)
    if kind is not None and kind.strip() == "function":
        return (yield from _FENCED(cur, calls))
    cur.pos = start
    return (yield from _BARE(cur, calls))


class DeepSeekV31(ToolFormat):
    name = "deepseek-v3.1"
    markers = (CALL_BEGIN,)
    preserved = (*SECTION, CALL_BEGIN, CALL_END, SEP)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, section_bodies(SECTION, CALL_BEGIN, _call))

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"{SECTION[0]}{CALL_BEGIN}{tool.name}{SEP}", f"{CALL_END}{SECTION[1]}"))


class DeepSeekR1(DeepSeekV31):
    """R1 and V3 (and their distills) fence the arguments."""

    name = "deepseek-r1"
    markers = (CALL_BEGIN, "```json")

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"{SECTION[0]}{CALL_BEGIN}function{SEP}{tool.name}\n```json\n", f"\n```{CALL_END}{SECTION[1]}"))
