"""Ollama's answers from the chat pipeline's choice: one JSON body, or NDJSON records (a
record per piece of text or thinking, tool calls whole in one record, then the final record
with done_reason and the measured durations in nanoseconds)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from llamaserve.server.chat.formats.collect import Collected
from llamaserve.server.chat.formats.events import CallEnd, CallStart, ReasoningDelta, TextDelta
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.tools import ToolCall
from llamaserve.server.errors import ApiError
from llamaserve.server.ollama.errors import ollama_body
from llamaserve.server.ollama.protocol import now
from llamaserve.server.sse import EventStreamResponse

NS = 1_000_000_000


class NdjsonResponse(EventStreamResponse):
    """Ollama streams one JSON object a line, with no SSE framing and no keep-alive pings."""
    content_type = b"application/x-ndjson"
    pings = False


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class Answer:
    """What every record of one answer shares."""
    model: str  # the name the client asked for, as Ollama echoes it
    kind: str  # chat | generate
    started: float  # time.monotonic() when the request came
    load_seconds: float  # spent loading the model for this request

    def record(self, text: str = "", thinking: str = "", calls: list[ToolCall] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": now()}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = [tool_call(c) for c in calls]
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        out["done"] = False
        return out

    def final(self, record: dict[str, Any], stats: dict[str, Any], finish: str) -> dict[str, Any]:
        first = stats.get("time_to_first_token") or 0.0
        total = stats.get("total_time") or first
        return {**record, "done": True, "done_reason": "length" if finish == "length" else "stop",
                "total_duration": int((time.monotonic() - self.started) * NS),
                "load_duration": int(self.load_seconds * NS),
                "prompt_eval_count": stats["prompt_tokens"], "prompt_eval_duration": int(first * NS),
                "eval_count": stats["completion_tokens"], "eval_duration": int(max(0.0, total - first) * NS)}


def tool_call(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        arguments = {}
    return {"function": {"name": call.name, "arguments": arguments}}


def body(answer: Answer, choice: Choice) -> dict[str, Any]:
    assert choice.stats is not None
    record = answer.record(choice.content or "", choice.reasoning or "", choice.calls)
    return answer.final(record, choice.stats, choice.finish)


class Records(FamilyStream):
    def __init__(self, chat: ChatRun, answer: Answer) -> None:
        super().__init__(chat)
        self.answer = answer
        self.calls = Collected()  # Ollama sends each tool call whole, once its arguments end

    def opening(self) -> bytes:
        return b""

    def update(self, update: Update) -> bytes:
        out = []
        for event in update.events:
            if isinstance(event, TextDelta) and event.text:
                out.append(line(self.answer.record(event.text)))
            elif isinstance(event, ReasoningDelta) and event.text:
                out.append(line(self.answer.record(thinking=event.text)))
            elif isinstance(event, (CallStart, CallEnd)):
                self.calls.add([event])
                if isinstance(event, CallEnd):
                    out.append(line(self.answer.record(calls=self.calls.calls[-1:])))
        if update.stats is not None:
            out.append(line(self.answer.final(self.answer.record(), update.stats, update.finish or "stop")))
        return b"".join(out)

    def closing(self) -> bytes:
        return b""

    def error_event(self, error: ApiError) -> bytes:
        return line(ollama_body(error))
