"""DeepSeek V3.2's and V4's calls, in DSML: <｜DSML｜function_calls> (V4: tool_calls) around
<｜DSML｜invoke name="N"> elements whose <｜DSML｜parameter name="K" string="true|false">
values are text as it is (string="true") or JSON."""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from llamaserve.server.chat.formats.attributed import Attributed, attributed_call
from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import chosen, per_parameter_grammar, properties_of, string_valued
from llamaserve.server.chat.formats.markup import block_of_calls
from llamaserve.server.chat.formats.reading import Cursor, Reader
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

DSML = "｜DSML｜"
_TAGS = Attributed(call_open=f"<{DSML}invoke", argument_open=f"<{DSML}parameter", header_close=">",
                   argument_close=f"</{DSML}parameter>", call_close=f"</{DSML}invoke>", tool="name", key="name",
                   string=("string", "true"))


def _invoke(cur: Cursor, calls: Calls) -> Reader:
    return attributed_call(cur, calls, _TAGS)


class DeepSeekV32(ToolFormat):
    name = "deepseek-v3.2"
    markers = ("dsml_token + 'function_calls>",)  # the template builds its tags from dsml_token
    block: ClassVar[str] = "function_calls"

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        closer = f"</{DSML}{self.block}>"

        def block(cur: Cursor, calls: Calls) -> Reader:
            return block_of_calls(cur, calls, closer, _invoke)
        yield from tagged_calls(cur, calls, {f"<{DSML}{self.block}>": block})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        strings: dict[str, bool] = {}  # a parameter's name -> whether it is a string (the first tool's say)
        for tool in chosen(tools, choice):
            for key, schema in properties_of(tool.parameters).items():
                strings.setdefault(key, string_valued(schema))
        return per_parameter_grammar(
            tools, choice,
            lambda tool: (f'<{DSML}{self.block}>\n<{DSML}invoke name="{tool.name}">\n',
                          f"</{DSML}invoke>\n</{DSML}{self.block}>"),
            lambda key: (f'<{DSML}parameter name="{key}" string="{str(strings.get(key, False)).lower()}">',
                         f"</{DSML}parameter>\n"))


class DeepSeekV4(DeepSeekV32):
    name = "deepseek-v4"
    markers = ("dsml_token + 'tool_calls>",)
    block = "tool_calls"
