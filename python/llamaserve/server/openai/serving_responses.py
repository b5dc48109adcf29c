"""/v1/responses: the chat pipeline's one choice as a response object, or as the stream of
typed events (`event:` and `data:` lines, numbered) that the OpenAI SDK assembles into one:
reasoning and message items with their text deltas, function_call items whose arguments
arrive in pieces."""
from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server import sse
from llamaserve.server.chat.formats.events import CallArguments, CallEnd, CallStart, ReasoningDelta, TextDelta
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.tools import ToolCall
from llamaserve.server.errors import ApiError
from llamaserve.server.openai.errors import openai_body
from llamaserve.server.openai.responses_protocol import (
    ResponsesRequest, ResponseShell, function_call_item, message_item, output_text, reasoning_item, response_usage)


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def shell(req: ResponsesRequest, model: LoadedModel) -> ResponseShell:
    return ResponseShell(_id("resp"), int(time.time()), model.name, req.echo)


def _status(finish: str) -> str:
    return "incomplete" if finish == "length" else "completed"


def body(shell_: ResponseShell, choice: Choice) -> dict[str, Any]:
    assert choice.stats is not None
    status = _status(choice.finish)
    items = [] if choice.reasoning is None else [reasoning_item(_id("rs"), choice.reasoning, status)]
    if choice.content is not None:
        items.append(message_item(_id("msg"), [choice.content], status))
    items += [function_call_item(_id("fc"), call, "completed") for call in choice.calls]
    return shell_.response(status, items, response_usage(choice.stats))


class _OpenItem:
    """The output item being streamed: a message or reasoning item's text, or a call."""

    def __init__(self, kind: str, item_id: str, index: int, call: CallStart | None = None) -> None:
        self.kind, self.id, self.index, self.call = kind, item_id, index, call
        self.texts: list[str] = []


class ResponseEvents(FamilyStream):
    def __init__(self, chat: ChatRun, shell_: ResponseShell) -> None:
        super().__init__(chat)
        self.shell = shell_
        self._sequence = itertools.count()
        self.items: list[dict[str, Any]] = []  # finished output items
        self.open: _OpenItem | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(self._sequence), **fields}
        return b"event: " + kind.encode() + b"\n" + sse.event(data)

    def opening(self) -> bytes:
        return (self._event("response.created", response=self.shell.response("in_progress"))
                + self._event("response.in_progress", response=self.shell.response("in_progress")))

    def update(self, update: Update) -> bytes:
        out = []
        for event in update.events:
            if isinstance(event, TextDelta):
                out.append(self._text("message", event.text))
            elif isinstance(event, ReasoningDelta):
                out.append(self._text("reasoning", event.text))
            elif isinstance(event, CallStart):
                out.append(self._close("completed") + self._start_call(event))
            elif isinstance(event, CallArguments):
                assert self.open is not None
                self.open.texts.append(event.text)
                out.append(self._event("response.function_call_arguments.delta", item_id=self.open.id,
                                       output_index=self.open.index, delta=event.text))
            elif isinstance(event, CallEnd):
                out.append(self._close("completed", event.arguments))
        if update.stats is not None:
            status = _status(update.finish or "stop")
            final = "response.incomplete" if status == "incomplete" else "response.completed"
            out.append(self._close(status) + self._event(
                final, response=self.shell.response(status, self.items, response_usage(update.stats))))
        return b"".join(out)

    def closing(self) -> bytes:
        return b""

    def error_event(self, error: ApiError) -> bytes:
        body_ = openai_body(error)["error"]
        return self._event("error", code=body_["code"], message=body_["message"], param=body_["param"])

    # -- items ------------------------------------------------------------------------------

    def _text(self, kind: str, text: str) -> bytes:
        """A text delta of a message or reasoning item, opening the item first."""
        out = b""
        if self.open is None or self.open.kind != kind:
            out += self._close("completed") + self._start(kind)
        assert self.open is not None
        self.open.texts.append(text)
        delta = "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        extra = {"logprobs": []} if kind == "message" else {}
        return out + self._event(delta, item_id=self.open.id, output_index=self.open.index, content_index=0,
                                 delta=text, **extra)

    def _start(self, kind: str) -> bytes:
        self.open = _OpenItem(kind, _id("msg" if kind == "message" else "rs"), len(self.items))
        where = {"item_id": self.open.id, "output_index": self.open.index, "content_index": 0}
        if kind == "message":
            return (self._event("response.output_item.added", output_index=self.open.index,
                                item=message_item(self.open.id, [], "in_progress"))
                    + self._event("response.content_part.added", **where, part=output_text("")))
        return (self._event("response.output_item.added", output_index=self.open.index,
                            item=reasoning_item(self.open.id, None, "in_progress"))
                + self._event("response.content_part.added", **where, part={"type": "reasoning_text", "text": ""}))

    def _start_call(self, start: CallStart) -> bytes:
        self.open = _OpenItem("call", _id("fc"), len(self.items), start)
        call = ToolCall(start.id, start.name, "")
        return self._event("response.output_item.added", output_index=self.open.index,
                           item=function_call_item(self.open.id, call, "in_progress"))

    def _close(self, status: str, arguments: str | None = None) -> bytes:
        """Finish the open item, if any."""
        item, self.open = self.open, None
        if item is None:
            return b""
        text = "".join(item.texts)
        if item.kind == "call":
            assert item.call is not None
            done = function_call_item(item.id, ToolCall(item.call.id, item.call.name, arguments or text), "completed")
            self.items.append(done)
            return (self._event("response.function_call_arguments.done", item_id=item.id, output_index=item.index,
                                arguments=done["arguments"])
                    + self._event("response.output_item.done", output_index=item.index, item=done))
        where = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        if item.kind == "message":
            done = message_item(item.id, [text], status)
            events = (self._event("response.output_text.done", **where, text=text, logprobs=[])
                      + self._event("response.content_part.done", **where, part=output_text(text)))
        else:
            done = reasoning_item(item.id, text, status)
            events = (self._event("response.reasoning_text.done", **where, text=text)
                      + self._event("response.content_part.done", **where,
                                    part={"type": "reasoning_text", "text": text}))
        self.items.append(done)
        return events + self._event("response.output_item.done", output_index=item.index, item=done)
