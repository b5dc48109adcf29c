"""Muse Glimmer's format: a reply is messages, each " to=RECIPIENT<|message|>" and its
content, ended by <|eom|> (another follows, after <|start|>assistant) or <|eot|>. To self is
reasoning, to user (or no one) text; to a tool, the content is an ATEM block of calls:
<atem:function_calls><atem:invoke name="n"><atem:parameter name="p">v</atem:parameter>
</atem:invoke></atem:function_calls>. Call markup inside text or reasoning stays there."""
from __future__ import annotations

import re
from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.harmony import message_header
from llamaserve.server.chat.formats.markup import Markup, markup_block
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, match_any, message_until, skip_space, text_until
from llamaserve.server.chat.tools import Tool, ToolChoice

_ENDS = ("<|eom|>", "<|eot|>")
_RECIPIENT = re.compile(r"\s*to=(\S+)\s*\Z")
_ATEM = Markup(call_open='<atem:invoke name="', name_close='">', key_open='<atem:parameter name="', key_close='">',
               value_close="</atem:parameter>", call_close="</atem:invoke>",
               block=("<atem:function_calls>", "</atem:function_calls>"))


class MuseGlimmer(ToolFormat):
    name = "muse-glimmer"
    markers = ("<atem:function_calls>", "<|eom|>")
    preserved = ("<|start|>", "<|message|>", "<|eom|>", "<|eot|>")
    reads_reasoning = True  # to=self

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        while True:
            start, header = yield from message_header(cur, (" to=", "<|message|>"))
            if header is None or (header.strip() and not _RECIPIENT.match(header)):
                cur.pos = start  # not a message: the rest is text
                yield from text_until(cur, ())
                return
            recipient = _RECIPIENT.match(header).group(1) if header.strip() else "user"
            if recipient not in ("self", "user"):
                if calls.full:
                    return
                content = cur.pos
                if (yield from skip_space(cur)) and (yield from match(cur, _ATEM.block[0])) and \
                        (yield from markup_block(cur, calls, _ATEM)):
                    if not (yield from skip_space(cur)) or (yield from match_any(cur, _ENDS)) is None:
                        return
                    continue
                cur.pos = content
            ended = yield from message_until(cur, _ENDS, recipient == "self")
            if ended is None:
                return

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return _ATEM.grammar(tools, choice, lead=" to={name}<|message|>")
