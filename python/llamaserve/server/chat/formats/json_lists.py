"""Families whose calls are one JSON call object or a list of them after a marker of their
own, written as a table: the marker, what closes the calls, the keys of a call object, and
how the grammar that forces a call spells it. Granite 3.3, FireFunction v2, Apriel, Nemotron
Nano v2, Command R7B / Cohere2 MoE, Command R+, Apertus, GigaChat 3 and 3.1."""
from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls, arguments_object, json_call
from llamaserve.server.chat.formats.grammar import per_tool_grammar, wrapped_json_call_grammar
from llamaserve.server.chat.formats.json_bodies import calls_between
from llamaserve.server.chat.formats.reading import Cursor, Reader, json_string, match, skip_space
from llamaserve.server.chat.formats.tagged import Body, closing, json_calls, tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice


class JsonListFormat(ToolFormat):
    """Calls after `opener`, through `closer` (none: they end the reply); each object read by
    `call`, forced as `spelled` around one call object."""

    opener: ClassVar[str]
    closer: ClassVar[str] = ""
    fence: ClassVar[bool] = False  # the calls may be in a ```json fence
    call: ClassVar[Body] = staticmethod(json_call)
    keys: ClassVar[dict[str, Any]] = {}  # a call object's keys when not "name" and "arguments"
    spelled: ClassVar[tuple[str, str] | None] = None  # around one call object; else opener[ ... ]closer

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        closers = (self.closer,) if self.closer else ()
        yield from tagged_calls(cur, calls, {self.opener: calls_between(*closers, call=self.call, fence=self.fence)})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        before, after = self.spelled or (self.opener + "[", "]" + self.closer)
        return wrapped_json_call_grammar(tools, choice, before, after, **self.keys)


class Granite(JsonListFormat):
    """Granite 3.3 (Granite 4 writes Hermes' <tool_call> tags)."""

    name = "granite"
    markers = ("<|tool_call|>",)
    opener = "<|tool_call|>"
    preserved = (opener,)


class FireFunction(JsonListFormat):
    name = "firefunction-v2"
    markers = (" functools[",)
    opener = "functools"
    spelled = (" functools[", "]")

    def template_variables(self, tools: Sequence[Tool]) -> dict[str, Any]:
        # Its template lists the tools from `functions`, a JSON text, and fails without it.
        return {"functions": json.dumps([t.to_openai() for t in tools], indent=2) if tools else ""}


class Apriel(JsonListFormat):
    name = "apriel"
    markers = ("<tool_calls>[", "]</tool_calls>")
    opener, closer = "<tool_calls>", "</tool_calls>"


class NemotronNanoV2(JsonListFormat):
    name = "nemotron-nano-v2"
    markers = ("<TOOLCALL>[",)
    opener, closer = "<TOOLCALL>", "</TOOLCALL>"
    preserved = (opener, closer)


_COHERE_KEYS = ("tool_name", "parameters")  # a Cohere call object's name and arguments


class CommandR7B(JsonListFormat):
    """Command R7B and Cohere2 MoE (their response tags are control tokens: not text)."""

    name = "command-r7b"
    markers = ("<|START_ACTION|>",)
    opener, closer = "<|START_ACTION|>", "<|END_ACTION|>"
    preserved = (opener, closer)
    call = staticmethod(partial(json_call, name_keys=_COHERE_KEYS[:1], argument_keys=_COHERE_KEYS[1:]))
    keys = {"name_key": _COHERE_KEYS[0], "arguments_key": _COHERE_KEYS[1]}


class CommandRPlus(CommandR7B):
    name = "command-r-plus"
    markers = ("Action:\\n```json",)  # as the template's source spells it
    preserved = ()
    opener, closer, fence = "Action:", "", True
    spelled = ("Action:\n```json\n[", "]\n```")


def name_keyed_call(cur: Cursor, calls: Calls) -> Reader:
    """{"NAME": {arguments}}; False, having emitted nothing, if NAME is no offered tool."""
    if not ((yield from match(cur, "{")) and (yield from skip_space(cur))):
        return False
    name = yield from json_string(cur)
    if not calls.known(name) or not ((yield from skip_space(cur)) and (yield from match(cur, ":"))):
        return False
    yield calls.start(name)
    yield from arguments_object(cur, calls)
    yield calls.end()
    if not (yield from closing(cur, "}")):
        raise calls.fail("is not closed by }")
    return True


class Apertus(JsonListFormat):
    """Each call object is keyed by its tool's name."""

    name = "apertus"
    markers = ("<|tools_prefix|>",)
    opener, closer = "<|tools_prefix|>", "<|tools_suffix|>"
    preserved = (opener, closer)
    call = staticmethod(name_keyed_call)

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (
            f"{self.opener}[{{{json.dumps(tool.name, ensure_ascii=False)}: ", f"}}]{self.closer}"))


class GigaChat31(JsonListFormat):
    name = "gigachat-3.1"
    markers = ("<|function_call|>",)
    opener = "<|function_call|>"
    preserved = (opener,)
    spelled = ("<|function_call|>", "")


def _function_call_message(cur: Cursor, calls: Calls) -> Reader:
    """After <|message_sep|>: a message to the role `function call`, a call object."""
    return ((yield from skip_space(cur)) and (yield from match(cur, "function call<|role_sep|>"))
            and (yield from json_calls(cur, calls)))


class GigaChat3(JsonListFormat):
    """A call is a message of its own, to the role `function call`."""

    name = "gigachat-3"
    markers = ("<|role_sep|>", "'function call'")
    preserved = ("<|message_sep|>", "<|role_sep|>")
    spelled = ("<|message_sep|>\n\nfunction call<|role_sep|>\n", "")

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        yield from tagged_calls(cur, calls, {"<|message_sep|>": _function_call_message})
