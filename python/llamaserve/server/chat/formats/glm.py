"""GLM 4.6/4.7's calls, also written by Spark 2.5, Poolside Laguna and Ling 3.0:
<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call> (newlines between
tags in some); and Tencent Hy3's, the same in its own tags inside <tool_calls:opensource>."""
from __future__ import annotations

from llamaserve.server.chat.formats.markup import Markup, MarkupFormat


class Glm(MarkupFormat):
    name = "glm"
    markers = ("<tool_call>", "<arg_key>", "<arg_value>")
    markup = Markup(call_open="<tool_call>", name_close="", key_open="<arg_key>", key_close="</arg_key>",
                    value_open="<arg_value>", value_close="</arg_value>", call_close="</tool_call>")


class Hy3(MarkupFormat):
    """Hy3's template builds its tags with '...{}>'.format(':opensource')."""

    name = "hy3"
    markers = ("'<tool_sep{}>'", "'<arg_key{}>'", ":opensource")
    markup = Markup(call_open="<tool_call:opensource>", name_close="<tool_sep:opensource>",
                    key_open="<arg_key:opensource>", key_close="</arg_key:opensource>",
                    value_open="<arg_value:opensource>", value_close="</arg_value:opensource>",
                    call_close="</tool_call:opensource>",
                    block=("<tool_calls:opensource>", "</tool_calls:opensource>"), bare_calls=True)
