"""/v1/messages: a request becomes the /v1 chat plan (the model's chat template, tools in the
prompt, a grammar for a forced call); engine output becomes a message, or Anthropic's event
sequence: message_start, then per content block content_block_start (the first followed by
a ping), its deltas and content_block_stop, then message_delta and message_stop."""
from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from llamaserve.errors import EngineError
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.results import TokenLogprob
from llamaserve.server import sse
from llamaserve.server.anthropic import protocol
from llamaserve.server.anthropic.errors import anthropic_body
from llamaserve.server.errors import to_api_error
from llamaserve.server.openai import serving_chat
from llamaserve.server.openai.chat_protocol import ChatRequest
from llamaserve.server.openai.choices import Output, Run, finish_reason
from llamaserve.server.openai.logprobs import TokenText
from llamaserve.tool_calls import ToolCall, may_become_call, parse_tool_calls


@dataclass(frozen=True)
class MessagesPlan:
    chat: serving_chat.ChatPlan
    prompt: list[int]  # tokenized here, so that message_start can report input_tokens
    arguments: dict[str, Any]  # engine arguments
    stop_sequences: Sequence[str]  # the client's (the template adds its own)
    id: str
    model: str


async def plan(req: ChatRequest, model: LoadedModel, default_max_tokens: int) -> MessagesPlan:
    chat = await serving_chat.plan(req, model, default_max_tokens)
    (arguments,) = chat.arguments
    stop_sequences = req.sampling.arguments.get("stop", [])
    if stop_sequences:  # the engine does not say which stop string ended the text: its tokens do
        arguments = {**arguments, "logprobs": 0}
    prompt = await asyncio.to_thread(model.engine.tokenize, chat.prompt)  # a long one must not stall the streams
    return MessagesPlan(chat, prompt, arguments, stop_sequences, "msg_" + secrets.token_hex(12), model.name)


def _stop_sequence(messages: MessagesPlan, records: list[TokenLogprob], text_of: TokenText) -> str | None:
    """The client's stop sequence that ended the text, if one did: the engine cut the text
    before the earliest of all its stop strings in what the model generated."""
    if not messages.stop_sequences:
        return None
    generated = b"".join(text_of(token)[0] for token, _, _ in records).decode("utf-8", errors="replace")
    found = min(((generated.find(s), s) for s in messages.arguments["stop"] if s in generated), default=None)
    return found[1] if found is not None and found[1] in messages.stop_sequences else None


def _stop_reason(stats: dict[str, Any], calls: list[ToolCall], stop_sequence: str | None) -> str:
    reason = finish_reason(stats)  # raises for a request the engine cancelled or failed
    if calls:
        return "tool_use"
    if reason == "length":
        return "max_tokens"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def _content(messages: MessagesPlan, text: str) -> tuple[str | None, list[ToolCall]]:
    if messages.chat.tool_mode == "none":
        return text, []
    return parse_tool_calls(text, messages.chat.tools)


def body(messages: MessagesPlan, out: Output, text_of: TokenText) -> dict[str, Any]:
    assert out.stats is not None
    text, calls = _content(messages, out.joined)
    blocks = ([protocol.text_block(text)] if text else []) + [protocol.tool_use_block(c) for c in calls]
    stop_sequence = _stop_sequence(messages, out.logprobs, text_of)
    usage = protocol.usage(out.stats["prompt_tokens"], out.stats["completion_tokens"], out.stats["cached_tokens"])
    return protocol.message(messages.id, messages.model, blocks, _stop_reason(out.stats, calls, stop_sequence),
                            stop_sequence, usage)


class MessageEvents:
    """The SSE events of a streamed message; aclose() ends the run even if the stream was
    never iterated. Output that may still become a tool call is held back, and sent as whole
    blocks once it is known."""

    def __init__(self, run: Run, messages: MessagesPlan, text_of: TokenText) -> None:
        self.run, self.messages, self.text_of = run, messages, text_of
        self._iterator: AsyncIterator[bytes] | None = None
        self._text_event = sse.ChoiceTextEvents(lambda i: protocol.text_delta(i, sse.TEXT_HOLE))
        self._blocks = 0  # content blocks started

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    def _start(self, block: dict[str, Any]) -> bytes:
        start = protocol.event("content_block_start",
                               {"type": "content_block_start", "index": self._blocks, "content_block": block})
        if self._blocks == 0:
            start += protocol.event("ping", {"type": "ping"})
        self._blocks += 1
        return start

    def _stop(self) -> bytes:
        return protocol.event("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})

    def _text(self, text: str) -> bytes:
        return b"event: content_block_delta\n" + self._text_event(self._blocks - 1, text)

    def _whole(self, text: str | None, calls: list[ToolCall]) -> bytes:
        out = self._start(protocol.text_block("")) + self._text(text) + self._stop() if text else b""
        for call in calls:
            out += self._start(protocol.tool_use_block(call, with_input=False))
            out += protocol.event("content_block_delta", protocol.input_json_delta(self._blocks - 1, call.arguments))
            out += self._stop()
        return out

    def _end(self, stats: dict[str, Any], calls: list[ToolCall], records: list[TokenLogprob]) -> bytes:
        stop_sequence = _stop_sequence(self.messages, records, self.text_of)
        delta = {"stop_reason": _stop_reason(stats, calls, stop_sequence), "stop_sequence": stop_sequence}
        # The final counts: which prompt tokens came from the cache is known only now.
        usage = protocol.usage(stats["prompt_tokens"], stats["completion_tokens"], stats["cached_tokens"])
        return (protocol.event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
                + protocol.event("message_stop", {"type": "message_stop"}))

    async def _iterate(self) -> AsyncIterator[bytes]:
        m = self.messages
        start = protocol.message(m.id, m.model, [], None, None, protocol.usage(len(m.prompt), 0))
        yield protocol.event("message_start", {"type": "message_start", "message": start})
        held, holding, text_open = "", m.chat.tool_mode != "none", False
        records: list[TokenLogprob] = []
        try:
            async for _, pieces, new_records, stats in self.run.events():
                records += new_records
                text = "".join(pieces)
                if holding:
                    held += text
                    if m.chat.tool_mode == "forced" or may_become_call(held, m.chat.tools):
                        if stats is not None:
                            content, calls = _content(m, held)
                            yield self._whole(content, calls) + self._end(stats, calls, records)
                        continue
                    holding, text = False, held  # plain text after all: let it out
                if text:
                    if not text_open:
                        yield self._start(protocol.text_block(""))
                        text_open = True
                    yield self._text(text)
                if stats is not None:
                    yield (self._stop() if text_open else b"") + self._end(stats, [], records)
        except EngineError as exc:  # failed mid-stream: the status line is long sent
            yield protocol.event("error", anthropic_body(to_api_error(exc)))

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self.run.close()
