"""Qwen3-Coder's calls, also written by Qwen3.5, Nemotron 3 Nano, StepFun 3.5 and (in its own
tags) ByteDance Seed-OSS:
<tool_call>\\n<function=name>\\n<parameter=p>\\nvalue\\n</parameter>\\n</function>\\n</tool_call>.
Qwen3-Coder sometimes leaves out <tool_call>, so a <function=...> alone is a call too."""
from __future__ import annotations

from llamaserve.server.chat.formats.markup import Markup, MarkupFormat


class Qwen3Coder(MarkupFormat):
    name = "qwen3-coder"
    markers = ("<tool_call>", "<function=", "<parameter=")
    markup = Markup(call_open="<function=", name_close=">", key_open="<parameter=", key_close=">",
                    value_close="</parameter>", call_close="</function>", block=("<tool_call>", "</tool_call>"),
                    bare_calls=True, strip_newline=True)


class SeedOss(MarkupFormat):
    """Seed-OSS writes values without layout newlines: a value's own newlines are kept."""

    name = "seed-oss"
    markers = ("<seed:tool_call>",)
    markup = Markup(call_open="<function=", name_close=">", key_open="<parameter=", key_close=">",
                    value_close="</parameter>", call_close="</function>",
                    block=("<seed:tool_call>", "</seed:tool_call>"), bare_calls=True)
