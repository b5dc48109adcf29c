"""/v1/responses: the request runs as the chat completion it means (serving_chat's plan:
chat template, stop strings, grammar); engine output becomes a response object, or the
stream of typed events (`event:` and `data:` lines, numbered) that the OpenAI SDK
assembles into one."""
from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from llamaserve.errors import EngineError
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server import sse
from llamaserve.server.errors import to_api_error
from llamaserve.server.openai.choices import Output, Run, finish_reason
from llamaserve.server.openai.errors import openai_body
from llamaserve.server.openai.responses_protocol import (
    ResponsesRequest, ResponseShell, function_call_item, message_item, output_text, response_usage)
from llamaserve.server.openai.serving_chat import ChatPlan
from llamaserve.tool_calls import ToolCall, may_become_call, parse_tool_calls


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def shell(req: ResponsesRequest, model: LoadedModel) -> ResponseShell:
    return ResponseShell(_id("resp"), int(time.time()), model.name, req.echo)


def _status(stats: dict[str, Any]) -> str:
    """Raises EngineError for a request the engine cancelled or failed (finish_reason)."""
    return "incomplete" if finish_reason(stats) == "length" else "completed"


def _split(text: str, chat: ChatPlan) -> tuple[str | None, list[ToolCall]]:
    """(message text or None, function calls) of a whole output."""
    return parse_tool_calls(text, chat.tools) if chat.tool_mode != "none" else (text, [])


def body(shell_: ResponseShell, chat: ChatPlan, out: Output) -> dict[str, Any]:
    assert out.stats is not None
    status = _status(out.stats)
    content, calls = _split(out.joined, chat)
    items = [] if content is None else [message_item(_id("msg"), [content], status)]
    items += [function_call_item(_id("fc"), call, "completed") for call in calls]
    return shell_.response(status, items, response_usage(out.stats))


class ResponseEvents:
    """The SSE events of a streamed response; aclose() ends the run even if the stream was
    never iterated."""

    def __init__(self, run: Run, shell_: ResponseShell, chat: ChatPlan) -> None:
        self.run, self.shell, self.chat = run, shell_, chat
        self._sequence = itertools.count()
        self._iterator: AsyncIterator[bytes] | None = None
        self.items: list[dict[str, Any]] = []  # finished output items
        self._message: tuple[str, int, list[str]] | None = None  # open message: id, output index, texts

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(self._sequence), **fields}
        return b"event: " + kind.encode() + b"\n" + sse.event(data)

    async def _iterate(self) -> AsyncIterator[bytes]:
        yield self._event("response.created", response=self.shell.response("in_progress"))
        yield self._event("response.in_progress", response=self.shell.response("in_progress"))
        holding = self.chat.tool_mode != "none"  # until it is clear the output is no call
        if not holding:
            yield self._open_message()
        held: list[str] = []
        stats: dict[str, Any] | None = None
        try:
            async for _, pieces, _, stats in self.run.events():
                text = "".join(pieces)
                if holding:
                    held.append(text)
                    if self.chat.tool_mode == "forced" or may_become_call("".join(held), self.chat.tools):
                        continue
                    holding, text = False, "".join(held)
                    yield self._open_message()
                if text:
                    yield self._delta(text)
            assert stats is not None
            status = _status(stats)
        except EngineError as exc:  # failed mid-stream: the status line is long sent
            error = openai_body(to_api_error(exc))["error"]
            yield self._event("error", code=error["code"], message=error["message"], param=error["param"])
            return
        if holding:
            yield self._finish_held("".join(held), status)
        if self._message is not None:
            yield self._close_message(status)
        final = "response.incomplete" if status == "incomplete" else "response.completed"
        yield self._event(final, response=self.shell.response(status, self.items, response_usage(stats)))

    def _finish_held(self, text: str, status: str) -> bytes:
        content, calls = _split(text, self.chat)
        out = b""
        if content is not None:
            out += self._open_message() + (self._delta(content) if content else b"")
            if calls:
                out += self._close_message(status)
        for call in calls:
            out += self._function_call(call)
        return out

    def _open_message(self) -> bytes:
        item_id, index = _id("msg"), len(self.items)
        self._message = (item_id, index, [])
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return (self._event("response.output_item.added", output_index=index,
                            item=message_item(item_id, [], "in_progress"))
                + self._event("response.content_part.added", **where, part=output_text("")))

    def _delta(self, text: str) -> bytes:
        assert self._message is not None
        item_id, index, texts = self._message
        texts.append(text)
        return self._event("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                           delta=text, logprobs=[])

    def _close_message(self, status: str) -> bytes:
        assert self._message is not None
        item_id, index, texts = self._message
        self._message = None
        text = "".join(texts)
        item = message_item(item_id, [text], status)
        self.items.append(item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return (self._event("response.output_text.done", **where, text=text, logprobs=[])
                + self._event("response.content_part.done", **where, part=output_text(text))
                + self._event("response.output_item.done", output_index=index, item=item))

    def _function_call(self, call: ToolCall) -> bytes:
        item_id, index = _id("fc"), len(self.items)
        item = function_call_item(item_id, call, "completed")
        self.items.append(item)
        where = {"item_id": item_id, "output_index": index}
        return (self._event("response.output_item.added", output_index=index,
                            item=function_call_item(item_id, call, "in_progress", arguments=""))
                + self._event("response.function_call_arguments.delta", **where, delta=call.arguments)
                + self._event("response.function_call_arguments.done", **where, arguments=call.arguments)
                + self._event("response.output_item.done", output_index=index, item=item))

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self.run.close()
