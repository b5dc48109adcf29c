"""/v1/completions: prompts (a string, several, or token ids) times n choices, as one
text_completion or a stream of text_completion chunks. Choice index = prompt * n + j."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from llamaserve.engine import Prompt
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server import sse
from llamaserve.server.chat.formats import PlainText
from llamaserve.server.chat.formats.events import TextDelta
from llamaserve.server.chat.plan import choice_arguments
from llamaserve.server.chat.run import Run, Service
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.generation import GenerationService
from llamaserve.server.openai.errors import openai_body
from llamaserve.server.openai.logprobs import completion_logprobs
from llamaserve.server.openai.protocol import CompletionRequest
from llamaserve.server.openai.responses import Envelope, completion_choice
from llamaserve.server.usage import CacheReport, drafts, usage


@dataclass(frozen=True)
class CompletionPlan:
    prompts: list[Prompt]  # per choice
    arguments: list[dict[str, Any]]  # per choice
    echoes: list[str]  # per choice: the prompt text when echo is on, else ""
    top_logprobs: int | None


def plan(req: CompletionRequest, model: LoadedModel, defaults: dict[str, Any]) -> CompletionPlan:
    """`defaults`: the server's for what the request leaves out (ServerConfig.request_defaults)."""
    if req.echo and req.logprobs is not None:
        raise invalid("echo: cannot be combined with logprobs (prompt log-probabilities are not computed)")
    arguments = {**defaults, **req.sampling.arguments}
    if req.logprobs is not None:
        arguments["logprobs"] = req.logprobs
    n = req.sampling.n
    prompts: list[Prompt] = []
    per_choice: list[dict[str, Any]] = []
    echoes: list[str] = []
    for prompt in req.prompts:
        prompts.extend([prompt] * n)
        per_choice.extend(choice_arguments(arguments, n))
        if req.echo:
            text = prompt if isinstance(prompt, str) else model.engine.detokenize(prompt)
            echoes.extend([text] * n)
        else:
            echoes.extend([""] * n)
    return CompletionPlan(prompts, per_choice, echoes, req.logprobs)


async def prepared(comp: CompletionPlan, model: LoadedModel) -> CompletionPlan:
    """The plan with the work its choices share done once, off the event loop: the prediction
    tokenized (64 prompts times n choices of a 1 MB prediction stalled the loop for a minute)
    and the grammar compiled."""
    if not comp.arguments:
        return comp
    shared = await model.engine.aprepare(comp.arguments[0])
    done = {name: shared[name] for name in ("prediction", "grammar") if name in shared}
    return replace(comp, arguments=[{**arguments, **done} for arguments in comp.arguments])


async def start(req: CompletionRequest, model: LoadedModel, service: Service,
                defaults: dict[str, Any]) -> tuple[CompletionPlan, ChatRun]:
    """Plan `req` on `model` and submit every choice: what a completion runs, over HTTP or in process."""
    comp = await prepared(plan(req, model, defaults), model)  # the prediction tokenized once
    tokenized = {id(p): await GenerationService.tokenized(model, p) for p in comp.prompts}  # each prompt once
    return comp, ChatRun(Run(service, model, [tokenized[id(p)] for p in comp.prompts], comp.arguments), PlainText)


def _usage(choices: list[Choice], n: int) -> dict[str, Any]:
    stats = [c.stats for c in choices if c.stats is not None]
    firsts = [c.stats for k, c in enumerate(choices) if k % n == 0 and c.stats]  # one per prompt
    return usage(sum(s["prompt_tokens"] for s in firsts), sum(s["completion_tokens"] for s in stats),
                 sum(s["cached_tokens"] for s in firsts), drafts(stats),
                 cache=CacheReport.of(firsts[:1]) if len(firsts) == 1 else None)  # one prompt: its report


def body(env: Envelope, comp: CompletionPlan, choices: list[Choice], text_of: TokenText, n: int) -> dict[str, Any]:
    out = []
    for i, choice in enumerate(choices):
        logprobs = None
        if comp.top_logprobs is not None:
            logprobs = completion_logprobs(choice.records, text_of, comp.top_logprobs, len(comp.echoes[i]))
        out.append(completion_choice(i, comp.echoes[i] + "".join(choice.raw), choice.finish, logprobs))
    return env.completion(out, _usage(choices, n))


class CompletionEvents(FamilyStream):
    """The SSE events of a streamed completion (text, never parsed for calls)."""

    def __init__(self, chat: ChatRun, env: Envelope, comp: CompletionPlan, include_usage: bool,
                 text_of: TokenText, n: int) -> None:
        super().__init__(chat)
        self.env, self.comp, self.include_usage, self.text_of, self.n = env, comp, include_usage, text_of, n
        self.choices = [Choice() for _ in comp.prompts]
        self.offsets = [len(e) for e in comp.echoes]
        self._text_event = sse.ChoiceTextEvents(
            lambda i: env.completion([completion_choice(i, sse.TEXT_HOLE, None)], None))

    def opening(self) -> bytes:
        return b"".join(sse.event(self.env.completion([completion_choice(i, echo, None)], None))
                        for i, echo in enumerate(self.comp.echoes) if echo)

    def update(self, update: Update) -> bytes:
        i, out = update.choice, []
        text = "".join(e.text for e in update.events if isinstance(e, TextDelta))
        if self.comp.top_logprobs is not None and (text or update.records):
            logprobs = completion_logprobs(update.records, self.text_of, self.comp.top_logprobs, self.offsets[i])
            self.offsets[i] += len(text)
            out.append(sse.event(self.env.completion([completion_choice(i, text, None, logprobs)], None)))
        elif text:
            out.append(self._text_event(i, text))
        if update.stats is not None:
            self.choices[i].stats = update.stats
            out.append(sse.event(self.env.completion([completion_choice(i, "", update.finish)], None)))
        return b"".join(out)

    def closing(self) -> bytes:
        return sse.event(self.env.completion([], _usage(self.choices, self.n))) if self.include_usage else b""

    def error_event(self, error: ApiError) -> bytes:
        return sse.event(openai_body(error))

    def terminator(self) -> bytes:
        return b"data: [DONE]\n\n"
