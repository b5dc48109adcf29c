"""MiniCPM 5's calls: <function name="n"><param name="p">value</param></function>, a value
holding <, & or a newline wrapped in <![CDATA[...]]>."""
from __future__ import annotations

from llamaserve.server.chat.formats.markup import Markup, MarkupFormat


class MiniCpm5(MarkupFormat):
    name = "minicpm5"
    markers = ('<function name="', '<param name="')
    markup = Markup(call_open='<function name="', name_close='">', key_open='<param name="', key_close='">',
                    value_close="</param>", call_close="</function>", cdata=True)
