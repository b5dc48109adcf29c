"""Bodies (see tagged.py) of the JSON-style calls several families share: call objects after
a marker, a tool's name then its JSON arguments, calls inside a section's tags, and code
written for a code tool. Each family's module says only how its markers are spelled."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from llamaserve.server.chat.formats.calls import Calls, arguments_object, json_call
from llamaserve.server.chat.formats.markup import NAME_LIMIT, block_of_calls, escaped
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, read_until, skip_space, stream_until
from llamaserve.server.chat.formats.tagged import Body, closing, json_calls

# The tools that a bare block of code goes to (Llama 3.1's built-in code interpreter,
# Functionary's python), the first of them offered.
CODE_TOOLS = ("python", "code_interpreter")

FENCE = (("```", "json"), ("```",))  # optional literals around arguments or calls in a ```json fence
Header = Callable[[str], tuple[str, str | None]]  # the text before the arguments -> (name, the model's call id)


def plain_name(header: str) -> tuple[str, str | None]:
    return header.strip(), None


def optional(cur: Cursor, literals: Sequence[str]) -> Reader:
    """Consume each of `literals` that comes next, after optional whitespace."""
    for literal in literals:
        if (yield from skip_space(cur)):
            yield from match(cur, literal)


def closed_by(cur: Cursor, calls: Calls, closers: Sequence[str]) -> Reader:
    """Each of `closers` in turn, after optional whitespace; a reply that ends counts as closed."""
    for closer in closers:
        if not (yield from closing(cur, closer)):
            raise calls.fail(f"is not closed by {closer}")


def calls_between(*closers: str, call: Body = json_call, fence: bool = False) -> Body:
    """A body of one call object or a JSON list of them (each read by `call`), perhaps in a
    ```json fence, then `closers` (none: the calls end the reply)."""
    def body(cur: Cursor, calls: Calls) -> Reader:
        yield from optional(cur, FENCE[0] if fence else ())
        if not (yield from json_calls(cur, calls, call)):
            return False
        if not calls.full:  # parallel_tool_calls false: the rest is not read
            yield from optional(cur, FENCE[1] if fence else ())
            yield from closed_by(cur, calls, closers)
        return True
    return body


def named_call(name_close: str, *closers: str, header: Header = plain_name, fence: bool = False) -> Body:
    """A body of a tool's name (`header` reads it from the text up to `name_close`), then its
    JSON arguments, perhaps in a ```json fence, then `closers`. The name goes out as soon as
    it is read; False, having emitted nothing, if it names no offered tool."""
    def body(cur: Cursor, calls: Calls) -> Reader:
        text = yield from read_until(cur, name_close, NAME_LIMIT)
        if text is None:
            return False
        name, call_id = header(text)
        if not calls.known(name):
            return False
        yield calls.start(name, call_id)
        yield from optional(cur, FENCE[0] if fence else ())
        yield from arguments_object(cur, calls)
        yield calls.end()
        yield from optional(cur, FENCE[1] if fence else ())
        yield from closed_by(cur, calls, closers)
        return True
    return body


def section_bodies(section: tuple[str, str], call_open: str, call: Body) -> dict[str, Body]:
    """tagged_calls' bodies for calls that each follow `call_open`, inside a section's
    opening and closing tags (DeepSeek's and Kimi's tool▁calls tokens) or alone."""
    def one(cur: Cursor, calls: Calls) -> Reader:
        return (yield from match(cur, call_open)) and (yield from call(cur, calls))

    def block(cur: Cursor, calls: Calls) -> Reader:
        return (yield from block_of_calls(cur, calls, section[1], one))
    return {section[0]: block, call_open: call}


def code_tool(calls: Calls) -> str | None:
    return next((name for name in CODE_TOOLS if calls.known(name)), None)


def code_arguments(cur: Cursor, calls: Calls, stops: tuple[str, ...] = ()) -> Reader:
    """Stream the code at the cursor, up to the earliest of `stops` (consumed and returned)
    or the reply's end (None), as the arguments {"code": ...} of the open call."""
    yield calls.arguments('{"code": "')
    stop = yield from stream_until(cur, stops, lambda piece: calls.arguments(escaped(piece)))
    yield calls.arguments('"}')
    return stop
