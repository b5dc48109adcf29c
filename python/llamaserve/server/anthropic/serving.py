"""/v1/messages: the chat pipeline's one choice as a message, or as Anthropic's event
sequence: message_start, then per content block (thinking, text, tool_use) its
content_block_start (the first followed by a ping), its deltas (a tool's input as
input_json_delta pieces while the model writes it) and content_block_stop, then
message_delta and message_stop."""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llamaserve.results import TokenLogprob
from llamaserve.server.anthropic import protocol
from llamaserve.server.anthropic.errors import anthropic_body
from llamaserve.server.chat.formats.events import CallArguments, CallStart, ReasoningDelta, TextDelta
from llamaserve.server.chat.plan import ChatPlan
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.errors import ApiError
from llamaserve.server import sse


@dataclass(frozen=True)
class MessageSettings:
    """What a message's events and body need beyond the chat plan."""
    id: str
    model: str
    input_tokens: int  # the prompt's tokens, for message_start
    stop_sequences: Sequence[str]  # the client's (the template adds its own)
    stops: Sequence[str]  # every stop string the engine got


def engine_arguments(plan: ChatPlan, stop_sequences: Sequence[str]) -> list[dict[str, Any]]:
    """The engine arguments: with stop sequences, the sampled tokens' records too (the engine
    does not say which stop string ended the text: its tokens do)."""
    return [{**a, "logprobs": 0} for a in plan.arguments] if stop_sequences else plan.arguments


def settings(plan: ChatPlan, stop_sequences: Sequence[str]) -> MessageSettings:
    prompt = plan.prompt
    assert not isinstance(prompt, str)  # planned with as_tokens: message_start reports the count
    return MessageSettings("msg_" + secrets.token_hex(12), plan.model.name, len(prompt), stop_sequences,
                           plan.arguments[0].get("stop", []))


def _stop_sequence(message: MessageSettings, records: list[TokenLogprob], text_of: TokenText) -> str | None:
    """The client's stop sequence that ended the text, if one did: the engine cut the text
    before the earliest of all its stop strings in what the model generated."""
    if not message.stop_sequences:
        return None
    generated = b"".join(text_of(token)[0] for token, _, _ in records).decode("utf-8", errors="replace")
    found = min(((generated.find(s), s) for s in message.stops if s in generated), default=None)
    return found[1] if found is not None and found[1] in message.stop_sequences else None


def _stop_reason(finish: str, stop_sequence: str | None) -> str:
    if finish == "tool_calls":
        return "tool_use"
    if finish == "length":
        return "max_tokens"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def _usage(stats: dict[str, Any]) -> dict[str, int]:
    return protocol.usage(stats["prompt_tokens"], stats["completion_tokens"], stats["cached_tokens"])


def body(message: MessageSettings, choice: Choice, text_of: TokenText) -> dict[str, Any]:
    assert choice.stats is not None
    blocks = [protocol.thinking_block(choice.reasoning)] if choice.reasoning else []
    if choice.content:
        blocks.append(protocol.text_block(choice.content))
    blocks += [protocol.tool_use_block(c) for c in choice.calls]
    stop_sequence = _stop_sequence(message, choice.records, text_of)
    return protocol.message(message.id, message.model, blocks, _stop_reason(choice.finish, stop_sequence),
                            stop_sequence, _usage(choice.stats))


class MessageEvents(FamilyStream):
    def __init__(self, chat: ChatRun, message: MessageSettings, text_of: TokenText) -> None:
        super().__init__(chat)
        self.message, self.text_of = message, text_of
        self.records: list[TokenLogprob] = []
        self.blocks = 0  # content blocks started
        self.open: str | None = None  # the kind of the open block: text, thinking or tool_use
        self._text_event = sse.ChoiceTextEvents(lambda i: protocol.text_delta(i, sse.TEXT_HOLE))

    def opening(self) -> bytes:
        m = self.message
        start = protocol.message(m.id, m.model, [], None, None, protocol.usage(m.input_tokens, 0))
        return protocol.event("message_start", {"type": "message_start", "message": start})

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop()
        out += protocol.event("content_block_start",
                              {"type": "content_block_start", "index": self.blocks, "content_block": block})
        if self.blocks == 0:
            out += protocol.event("ping", {"type": "ping"})
        self.blocks += 1
        self.open = kind
        return out

    def _stop(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return protocol.event("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1})

    def update(self, update: Update) -> bytes:
        out = []
        self.records += update.records
        for event in update.events:
            if isinstance(event, TextDelta):
                if self.open != "text":
                    out.append(self._start("text", protocol.text_block("")))
                out.append(b"event: content_block_delta\n" + self._text_event(self.blocks - 1, event.text))
            elif isinstance(event, ReasoningDelta):
                if self.open != "thinking":
                    out.append(self._start("thinking", protocol.thinking_block("")))
                out.append(protocol.event("content_block_delta", protocol.thinking_delta(self.blocks - 1, event.text)))
            elif isinstance(event, CallStart):
                out.append(self._start("tool_use", {"type": "tool_use", "id": protocol.tool_use_id(event.id),
                                                    "name": event.name, "input": {}}))
            elif isinstance(event, CallArguments):
                out.append(protocol.event("content_block_delta", protocol.input_json_delta(self.blocks - 1, event.text)))
        if update.stats is not None:
            stop_sequence = _stop_sequence(self.message, self.records, self.text_of)
            delta = {"stop_reason": _stop_reason(update.finish or "stop", stop_sequence), "stop_sequence": stop_sequence}
            # The final counts: which prompt tokens came from the cache is known only now.
            out.append(self._stop()
                       + protocol.event("message_delta", {"type": "message_delta", "delta": delta,
                                                          "usage": _usage(update.stats)})
                       + protocol.event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def closing(self) -> bytes:
        return b""

    def error_event(self, error: ApiError) -> bytes:
        return protocol.event("error", anthropic_body(error))
