"""gpt-oss's harmony format. A reply is messages, each a header, <|message|> and its content:
the analysis channel is reasoning; final, and commentary to no one, are text; a message to
functions.NAME (named before or after its <|channel|>) is a call whose content is its JSON
arguments; one to any other recipient (a built-in tool) is shown as text. The reply begins
after the generation prompt's <|start|>assistant, later messages after <|end|><|start|>assistant.

Read from the text with this module rather than the `openai-harmony` package: that parser
reads token ids of the o200k vocabulary, which it downloads on first use (there is no
network at run time), while the engine hands the output parser text."""
from __future__ import annotations

import re
from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, arguments_object
from llamaserve.server.chat.formats.grammar import per_tool_grammar
from llamaserve.server.chat.formats.reading import (Cursor, Reader, match, match_any, read_until, skip_space,
                                                    message_until, text_until)
from llamaserve.server.chat.tools import Tool, ToolChoice

HEADER_LIMIT = 256  # a header is a channel, a recipient and a content type
_HEADER_STARTS = ("<|channel|>", " to=")
_ENDS = ("<|end|>", "<|call|>", "<|return|>")
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")
_RECIPIENT = re.compile(r"to=([^\s<]+)")


def message_header(cur: Cursor, starts: tuple[str, ...]) -> Reader:
    """After an optional `<|start|>assistant`: (where the header starts, the header up to
    <|message|>), the header None when what follows does not begin with one of `starts`."""
    if (yield from match(cur, "<|start|>")):
        yield from match(cur, "assistant")
    start = cur.pos
    if (yield from match_any(cur, starts)) is None:
        return start, None
    cur.pos = start
    return start, (yield from read_until(cur, "<|message|>", HEADER_LIMIT))


class Harmony(ToolFormat):
    name = "harmony"
    markers = ("<|channel|>", "<|start|>", "<|message|>")
    preserved = ("<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|end|>", "<|call|>", "<|return|>")
    reads_reasoning = True  # the analysis channel

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        while True:
            start, header = yield from message_header(cur, _HEADER_STARTS)
            if header is None:  # not a harmony message: the rest is text
                cur.pos = start
                yield from text_until(cur, ())
                return
            channels = _CHANNEL.findall(header)
            recipients = [r for r in _RECIPIENT.findall(header) if r != "assistant"]
            name = recipients[0].removeprefix("functions.") if recipients else None
            if recipients and recipients[0].startswith("functions.") and calls.known(name):
                if calls.full:
                    return
                yield calls.start(name)
                yield from arguments_object(cur, calls)
                yield calls.end()
                if not (yield from skip_space(cur)):
                    return
                yield from match_any(cur, _ENDS)
            elif (yield from message_until(cur, _ENDS, bool(channels) and channels[-1] == "analysis"
                                           and not recipients)) is None:
                return

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"<|channel|>commentary to=functions.{tool.name} <|constrain|>json<|message|>", ""))
