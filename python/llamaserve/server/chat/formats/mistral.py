"""Mistral's calls, each after [TOOL_CALLS]: a JSON list of call objects (Nemo), or
NAME[ARGS]{...} (Small 3.2, Devstral, Ministral 3), with [CALL_ID]ID before [ARGS] in Small
3.2. Their templates refuse a call id that is not 9 letters or digits, so the calls read get
such ids (the model's own when it wrote one)."""
from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.grammar import per_tool_grammar, wrapped_json_call_grammar
from llamaserve.server.chat.formats.json_bodies import calls_between, named_call
from llamaserve.server.chat.formats.reading import Cursor, Reader, skip_space
from llamaserve.server.chat.formats.tagged import tagged_calls
from llamaserve.server.chat.tools import Tool, ToolChoice

TOOL_CALLS = "[TOOL_CALLS]"
_CALL_ID = "[CALL_ID]"
_ID = re.compile(r"[A-Za-z0-9]{9}\Z")
_ID_ALPHABET = string.ascii_letters + string.digits


def mistral_call_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def _header(text: str) -> tuple[str, str | None]:
    """NAME or NAME[CALL_ID]ID: the name, and the model's id if its template would take it."""
    name, _, call_id = text.partition(_CALL_ID)
    return name.strip(), call_id.strip() if _ID.match(call_id.strip()) else None


_NAMED = named_call("[ARGS]", header=_header)
_LISTED = calls_between()


def _calls(cur: Cursor, calls: Calls) -> Reader:
    if not (yield from skip_space(cur)):
        return False
    return (yield from (_LISTED if cur.peek() in "[{" else _NAMED)(cur, calls))


class Mistral(ToolFormat):
    name = "mistral"
    markers = (TOOL_CALLS, "[ARGS]")
    preserved = (TOOL_CALLS, "[ARGS]", _CALL_ID)

    def read(self, cur: Cursor, calls: Calls) -> Reader:
        calls.new_id = mistral_call_id
        yield from tagged_calls(cur, calls, {TOOL_CALLS: _calls})

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return per_tool_grammar(tools, choice, lambda tool: (f"{TOOL_CALLS}{tool.name}[ARGS]", ""))


class MistralNemo(Mistral):
    """Nemo writes its calls as a JSON list."""

    name = "mistral-nemo"
    markers = (TOOL_CALLS + "[",)

    def call_grammar(self, tools: Sequence[Tool], choice: ToolChoice, parallel: bool) -> str:
        return wrapped_json_call_grammar(tools, choice, TOOL_CALLS + "[", "]")
