"""Functionary's calls. v3.1 (on Llama 3.1): <function=NAME>{...}</function>, and
<|python_tag|> as Llama 3.1 writes it. v3.2: a reply is messages, each ">>>RECIPIENT\\n" and
its content (the generation prompt wrote the first ">>>"): to `all` it is text, to a tool its
JSON arguments (to python, code)."""
from __future__ import annotations

from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, arguments_object
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.json_bodies import CODE_TOOLS, code_arguments, named_call
from llamaserve.server.chat.formats.llama3 import PYTHON_TAG, python_tag
from llamaserve.server.chat.formats.markup import NAME_LIMIT
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, read_until, skip_space, text_until
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

_V31_CALL = named_call(">", "</function>")


class FunctionaryV31(ToolFormat):
    name = "functionary-v3.1"
    markers = ("<function=", PYTHON_TAG)
    preserved = (PYTHON_TAG,)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {"<function=": _V31_CALL, PYTHON_TAG: python_tag})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (f"<function={tool.name}>", "</function>"))


NEXT = ">>>"


class FunctionaryV32(ToolFormat):
    name = "functionary-v3.2"
    markers = (">>>${recipient}",)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from match(cur, NEXT)
        while not calls.full:
            start = cur.pos
            recipient = yield from read_until(cur, "\n", NAME_LIMIT)
            name = recipient.strip() if recipient is not None else None
            if name == "all":
                if (yield from text_until(cur, (NEXT,), keep_space_at_end=calls.count == 0)) is None:
                    return
                continue
            if not calls.known(name):
                cur.pos = start  # no recipient line: the rest is text
                yield from text_until(cur, ())
                return
            yield calls.start(name)
            if name in CODE_TOOLS and (yield from skip_space(cur)) and cur.peek() != "{":
                following = (yield from code_arguments(cur, calls, (NEXT,))) is not None
                yield calls.end()
            else:
                yield from arguments_object(cur, calls)
                yield calls.end()
                following = (yield from skip_space(cur)) and (yield from match(cur, NEXT))
            if not following:  # the reply ended, or text followed the call without >>>
                yield from text_until(cur, (), keep_space_at_end=False)
                return

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (f"{tool.name}\n", ""))
