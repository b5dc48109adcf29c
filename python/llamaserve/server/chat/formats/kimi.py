"""Kimi's calls. K2: <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:INDEX
<|tool_call_argument_begin|>{...}<|tool_call_end|>...<|tool_calls_section_end|>, the
model's functions.NAME:INDEX kept as the call's id (its template names results by it). K3:
XTML sections, <|open|>response<|sep|>...<|close|>response<|sep|> then <|open|>tools<|sep|>
with calls (see attributed.py) through <|close|>tools<|sep|>; the section tags are not text."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.attributed import Attributed, attributed_call
from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.json_bodies import named_call, section_bodies
from llamaserve.server.chat.formats.markup import block_of_calls
from llamaserve.server.chat.formats.reading import Cursor, Reader
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

SECTION = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>")
CALL_BEGIN, ARGUMENTS, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"


def _header(text: str) -> tuple[str, str | None]:
    """functions.NAME:INDEX -> (NAME, the whole as the call's id)."""
    call_id = text.strip()
    name = call_id.removeprefix("functions.")
    head, colon, _ = name.rpartition(":")
    return (head if colon else name), call_id


class KimiK2(ToolFormat):
    name = "kimi-k2"
    markers = SECTION[:1] + (CALL_BEGIN,)
    preserved = (*SECTION, CALL_BEGIN, ARGUMENTS, CALL_END)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, section_bodies(SECTION, CALL_BEGIN,
                                                           named_call(ARGUMENTS, CALL_END, header=_header)))

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"{SECTION[0]}{CALL_BEGIN}functions.{tool.name}:0{ARGUMENTS}", f"{CALL_END}{SECTION[1]}"))


OPEN, CLOSE, SEP = "<|open|>", "<|close|>", "<|sep|>"
_TOOLS = (f"{OPEN}tools{SEP}", f"{CLOSE}tools{SEP}")
# Tags around the reply's sections: dropped (reasoning itself is split off before this parser).
_SECTION_TAGS = tuple(f"{edge}{section}{SEP}" for section in ("think", "response", "message") for edge in (OPEN, CLOSE))
_XTML = Attributed(call_open=f"{OPEN}call", argument_open=f"{OPEN}argument", header_close=SEP,
                   argument_close=f"{CLOSE}argument{SEP}", call_close=f"{CLOSE}call{SEP}", tool="tool", key="key",
                   string=("type", "string"), json=(f"{OPEN}json", f"{CLOSE}json{SEP}"))


def _calls(cur: Cursor, calls: Calls) -> Reader:
    """After <|open|>tools<|sep|>: calls through <|close|>tools<|sep|>."""
    return block_of_calls(cur, calls, _TOOLS[1], lambda cur, calls: attributed_call(cur, calls, _XTML))


def _section_tag(cur: Cursor, calls: Calls) -> Reader:
    """A section's tag: read, and neither text nor a call."""
    yield from ()
    return True


class KimiK3(ToolFormat):
    name = "kimi-k3"
    markers = (OPEN, CLOSE, "<|end_of_msg|>")
    preserved = (OPEN, CLOSE, SEP)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {_TOOLS[0]: _calls, **dict.fromkeys(_SECTION_TAGS, _section_tag)})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f'{_TOOLS[0]}{OPEN}call tool="{tool.name}" index="1"{SEP}{OPEN}json type="object"{SEP}',
            f"{CLOSE}json{SEP}{CLOSE}call{SEP}{_TOOLS[1]}"))
