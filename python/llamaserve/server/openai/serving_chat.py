"""/v1/chat/completions: the chat pipeline's choices as a chat.completion, or as a stream of
chat.completion.chunk events (text as content deltas; each tool call as its index, id and
name first, then its arguments in pieces)."""
from __future__ import annotations

from typing import Any

from llamaserve.server import sse
from llamaserve.server.chat.formats.events import CallArguments, CallStart, ReasoningDelta, TextDelta
from llamaserve.config import ServerConfig
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server.chat import plan as chat_plan
from llamaserve.server.chat.plan import ChatPlan
from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.run import Run, Service
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.errors import ApiError
from llamaserve.server.llamacpp.reports import Reports
from llamaserve.server.llamacpp.timings import timings
from llamaserve.server.openai.errors import openai_body
from llamaserve.server.openai.logprobs import chat_logprobs
from llamaserve.server.openai.responses import Envelope, chat_choice, chat_delta
from llamaserve.server.usage import CacheReport, drafts, usage


async def start(req: ChatRequest, model: LoadedModel, service: Service, config: ServerConfig) -> tuple[ChatPlan, ChatRun]:
    """Plan `req` on `model` and submit every choice: what a chat request runs, over HTTP or in process."""
    plan = await chat_plan.plan(req, model, config)
    return plan, ChatRun(Run(service, model, [plan.prompt] * req.sampling.n, plan.arguments), plan.parser)


def chat_usage(stats: list[dict[str, Any]]) -> dict[str, Any]:
    return usage(max((s["prompt_tokens"] for s in stats), default=0), sum(s["completion_tokens"] for s in stats),
                 max((s["cached_tokens"] for s in stats), default=0), drafts(stats),
                 sum(s.get("reasoning_tokens", 0) for s in stats), CacheReport.of(stats))


def body(env: Envelope, plan: ChatPlan, choices: list[Choice], text_of: TokenText,
         reports: Reports | None = None) -> dict[str, Any]:
    """`reports`: over HTTP, what llama-server's clients read besides OpenAI's fields."""
    out = []
    for i, choice in enumerate(choices):
        logprobs = None if plan.top_logprobs is None else chat_logprobs(choice.records, text_of, plan.top_logprobs)
        out.append(chat_choice(i, choice.content, choice.finish, tool_calls=[c.to_openai() for c in choice.calls],
                               logprobs=logprobs, reasoning=choice.reasoning))
    answer = env.chat(out, chat_usage([c.stats for c in choices if c.stats is not None]))
    return answer if reports is None else reports.add_to(answer, choices, plan.prompt, text_of)


class ChatEvents(FamilyStream):
    def __init__(self, chat: ChatRun, env: Envelope, plan: ChatPlan, include_usage: bool, text_of: TokenText,
                 reports: Reports | None = None) -> None:
        super().__init__(chat)
        self.env, self.plan, self.include_usage, self.text_of = env, plan, include_usage, text_of
        self.reports = reports
        self.timings = reports.running(chat.choices, plan.prompt) if reports is not None else None
        self._timings_now: dict[str, Any] | None = None  # what this update's chunks carry (timings_per_token)
        self.stats: list[dict[str, Any]] = []
        self.pending_records: list[list[Any]] = [[] for _ in range(chat.choices)]  # not yet sent with text
        self._content = sse.ChoiceTextEvents(lambda i: env.chat_chunk([chat_delta(i, {"content": sse.TEXT_HOLE})]))

    def _chunk(self, i: int, delta: dict[str, Any], reason: str | None = None, records: list[Any] | None = None) -> bytes:
        logprobs = None
        if self.plan.top_logprobs is not None and records is not None:
            logprobs = chat_logprobs(records, self.text_of, self.plan.top_logprobs)
        chunk = self.env.chat_chunk([chat_delta(i, delta, reason, logprobs)])
        if self._timings_now is not None:
            chunk["timings"] = self._timings_now
        return sse.event(chunk)

    def opening(self) -> bytes:
        # Over HTTP, content null: llama-server's first delta (OpenAI's SDKs read null and "" alike);
        # in process, the role alone: llama-cpp-python's
        delta = {"role": "assistant", "content": None} if self.reports is not None else {"role": "assistant"}
        return b"".join(self._chunk(i, delta) for i in range(self.chat.choices))

    def update(self, update: Update) -> bytes:
        progress = b""
        if self.reports is not None and update.progress:  # before the text its last chunk brought
            progress = b"".join(sse.event({**self.env.chat_chunk([]), **fields})
                                for fields in self.reports.progress_reports(update))
            if not update.events and update.stats is None and not update.records:
                return progress
        per_token = self.timings is not None and self.reports is not None and self.reports.timings_per_token
        self._timings_now = self.timings.after(update) if per_token and self.timings is not None else None
        return progress + self._update(update)

    def _update(self, update: Update) -> bytes:
        i, out = update.choice, []
        records = self.pending_records[i]
        records += update.records
        for event in update.events:
            if isinstance(event, TextDelta):
                if self.plan.top_logprobs is None and self._timings_now is None:
                    out.append(self._content(i, event.text))
                else:  # the tokens generated so far go with the text they made
                    out.append(self._chunk(i, {"content": event.text}, records=records))
                    records = self.pending_records[i] = []
            elif isinstance(event, ReasoningDelta):
                out.append(self._chunk(i, {"reasoning_content": event.text}))
            elif isinstance(event, CallStart):
                out.append(self._chunk(i, {"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                                           "function": {"name": event.name, "arguments": ""}}]}))
            elif isinstance(event, CallArguments):
                out.append(self._chunk(i, {"tool_calls": [{"index": event.index,
                                                           "function": {"arguments": event.text}}]}))
        if update.stats is not None:
            self.stats.append(update.stats)
            out.append(self._chunk(i, {}, update.finish, records=records if records else None))
        return b"".join(out)

    def closing(self) -> bytes:
        if not self.include_usage:
            return b""
        chunk = self.env.chat_chunk([], chat_usage(self.stats))
        if self.reports is not None and self.stats:
            chunk["timings"] = timings(self.stats[0])
        return sse.event(chunk)

    def error_event(self, error: ApiError) -> bytes:
        return sse.event(openai_body(error))

    def terminator(self) -> bytes:
        return b"data: [DONE]\n\n"
