"""The tool calls of one reply as they are read: numbered, given ids, their arguments
streamed in pieces and checked whole at the end; and the reader of the JSON call object most
formats use ({"name": ..., "arguments": {...}}, in any key order, possibly wrapped as
{"type": "function", "function": {...}}, arguments possibly a JSON string)."""
from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llamaserve.server.chat.formats.events import CallArguments, CallEnd, CallStart, MalformedCall
from llamaserve.server.chat.formats.reading import Cursor, Reader, json_string, json_value, match, skip_space

_ID_ALPHABET = string.ascii_letters + string.digits
NAME_KEYS = ("name",)
ARGUMENT_KEYS = ("arguments", "parameters", "input")


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


class Calls:
    """Numbers the calls of one reply, keeps the open call's arguments, and enforces
    the tool names offered and parallel_tool_calls. `schemas` (a tool's name -> its
    arguments' JSON schema) lets formats whose arguments are text (XML parameters) type them."""

    def __init__(self, names: Sequence[str], parallel: bool = True,
                 schemas: Mapping[str, Any] | None = None) -> None:
        self.names = frozenset(names)
        self.parallel = parallel
        self.schemas: Mapping[str, Any] = schemas or {}
        self.count = 0
        self._pieces: list[str] | None = None  # the open call's arguments so far
        self.new_id: Callable[[], str] = new_call_id  # a family whose template checks ids sets its own

    def known(self, name: Any) -> bool:
        return isinstance(name, str) and name in self.names

    @property
    def full(self) -> bool:
        """No further call is allowed (parallel_tool_calls false and one was made)."""
        return not self.parallel and self.count > 0

    @property
    def open(self) -> bool:
        return self._pieces is not None

    def start(self, name: str, call_id: str | None = None) -> CallStart:
        self._pieces = []
        return CallStart(self.count, call_id or self.new_id(), name)

    def arguments(self, piece: str) -> CallArguments:
        assert self._pieces is not None
        self._pieces.append(piece)
        return CallArguments(self.count, piece)

    def end(self) -> CallEnd:
        """Close the open call; its arguments must be one JSON object (none at all: {})."""
        assert self._pieces is not None
        text = "".join(self._pieces)
        if not text.strip():
            text = "{}"
            self._pieces = None
            end = CallEnd(self.count, text)
            self.count += 1
            return end
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise MalformedCall("the model's tool call arguments are not valid JSON") from None
        if not isinstance(value, dict):
            raise MalformedCall("the model's tool call arguments are not a JSON object")
        self._pieces = None
        end = CallEnd(self.count, text)
        self.count += 1
        return end

    def fail(self, why: str) -> MalformedCall:
        return MalformedCall(f"the model's tool call {why}")


def arguments_object(cur: Cursor, calls: Calls) -> Reader:
    """Stream the arguments object at the cursor into the open call (or an arguments value
    spelled as a JSON string, decoded, at once); raises MalformedCall if it is neither."""
    if not (yield from skip_space(cur)):
        raise calls.fail("ended before its arguments")
    if cur.peek() == '"':
        encoded = yield from json_string(cur)
        try:
            value = json.loads(encoded) if isinstance(encoded, str) and encoded.strip() else {}
        except (ValueError, RecursionError):
            raise calls.fail("arguments are not valid JSON") from None
        if not isinstance(value, dict):
            raise calls.fail("arguments are not a JSON object")
        yield calls.arguments(json.dumps(value, ensure_ascii=False))
        return
    if cur.peek() != "{":
        raise calls.fail("arguments are not a JSON object")
    if (yield from json_value(cur, calls.arguments)) is None:
        raise calls.fail("arguments are not valid JSON")


def json_call(cur: Cursor, calls: Calls, name_keys: Sequence[str] = NAME_KEYS,
              argument_keys: Sequence[str] = ARGUMENT_KEYS) -> Reader:
    """Read one call object at the cursor and emit it. Returns False, having emitted nothing,
    when the object is not a call to an offered tool (the caller reads it as text then);
    raises MalformedCall when it fails after its name was emitted. The name goes out with the
    first piece of the arguments (a client sees both within one token of each other)."""
    if not (yield from match(cur, "{")):
        return False
    name: str | None = None
    inner = closed = False
    early_arguments: str | None = None  # arguments read before the name
    while True:
        if not (yield from skip_space(cur)):
            break
        if cur.peek() == "}":
            cur.pos += 1
            closed = True
            break
        key = yield from json_string(cur)
        if not isinstance(key, str) or not (yield from skip_space(cur)) or not (yield from match(cur, ":")):
            break
        if not (yield from skip_space(cur)):
            break
        if key in name_keys and name is None and not inner:
            value = yield from json_string(cur)
            if not calls.known(value):
                return False
            name = value
            if early_arguments is not None:
                yield calls.start(name)
                yield calls.arguments(early_arguments)
        elif key in argument_keys and name is not None and not calls.open:
            yield calls.start(name)
            yield from arguments_object(cur, calls)
        elif key in argument_keys and not inner:  # the name comes later: keep them until it does
            if cur.peek() == '"':
                early_arguments = yield from json_string(cur)
            else:
                early_arguments = yield from json_value(cur)
            if not isinstance(early_arguments, str):
                return False
        elif key == "function" and cur.peek() == "{" and name is None and not inner:
            if not (yield from json_call(cur, calls, name_keys, argument_keys)):
                return False
            inner = True  # {"type": "function", "function": {call}}: the inner object was the call
        elif (yield from json_value(cur)) is None:
            break
        if not (yield from skip_space(cur)):
            break
        if (yield from match(cur, ",")):
            continue
        closed = yield from match(cur, "}")
        break
    if inner:
        return True
    if name is None:
        return False
    if not calls.open:  # a call without arguments
        if not closed:
            return False
        yield calls.start(name)
    elif not closed:
        raise calls.fail("is not a complete JSON object")
    yield calls.end()
    return True
