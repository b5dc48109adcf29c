"""The common shape of a reply with tool calls: text, and calls that each begin with an
opening marker wherever they appear. A body reader reads one call (or several) after its
marker, through its closing marker; when what follows a marker is no call, the marker is
text after all and reading goes on after it."""
from __future__ import annotations

from collections.abc import Callable, Mapping

from llamaserve.server.chat.formats.calls import Calls, json_call
from llamaserve.server.chat.formats.events import TextDelta
from llamaserve.server.chat.formats.reading import Cursor, Reader, match, skip_space, text_until

Body = Callable[[Cursor, Calls], Reader]  # returns True once it emitted a call, False for no call


def tagged_calls(cur: Cursor, calls: Calls, bodies: Mapping[str, Body]) -> Reader:
    """Text with calls: `bodies` maps each opening marker to the reader of what follows it."""
    markers = tuple(bodies)
    while True:
        found = yield from text_until(cur, markers, keep_space_at_end=calls.count == 0)
        if found is None or calls.full:
            return
        resume, space = cur.pos, cur.dropped
        if not (yield from bodies[found](cur, calls)):
            yield TextDelta(space + found)
            cur.pos = resume
        elif calls.full:  # parallel_tool_calls false: the rest of the reply is not read
            return


def closing(cur: Cursor, closer: str) -> Reader:
    """Consume `closer` after optional whitespace; a reply that ends instead counts as closed
    (a model may stop at its end-of-turn token before writing it). True if closed."""
    if not (yield from skip_space(cur)):
        return True
    return (yield from match(cur, closer))


def json_call_between(closer: str) -> Body:
    """A body of one JSON call object, then `closer` (Hermes: <tool_call>{...}</tool_call>)."""
    def body(cur: Cursor, calls: Calls) -> Reader:
        if not (yield from skip_space(cur)) or not (yield from json_call(cur, calls)):
            return False
        if not (yield from closing(cur, closer)):
            raise calls.fail(f"is not closed by {closer}")
        return True
    return body


def json_calls(cur: Cursor, calls: Calls, call: Body = json_call) -> Reader:
    """One JSON call object, or a JSON list of them, each read by `call` (a family may spell
    its objects otherwise: other keys, the name as the key). False if the first is no call."""
    if not (yield from skip_space(cur)):
        return False
    if cur.peek() == "{":
        return (yield from call(cur, calls))
    if not (yield from match(cur, "[")):
        return False
    made = 0
    while True:
        if not (yield from skip_space(cur)):
            break
        if not (yield from call(cur, calls)):
            if made == 0:
                return False
            raise calls.fail("list holds something other than a call")
        made += 1
        if calls.full:  # parallel_tool_calls false: the rest of the list is not read
            return True
        if not (yield from skip_space(cur)):
            break
        if (yield from match(cur, ",")):
            continue
        if (yield from match(cur, "]")):
            return True
        break
    if made == 0:
        return False
    if cur.closed:  # ended right after a complete call: the list's "]" is all that is missing
        return True
    raise calls.fail("list is not valid JSON")
