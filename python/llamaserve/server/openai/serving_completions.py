"""/v1/completions: prompts (a string, several, or token ids) times n choices, as one
text_completion or a stream of text_completion chunks. Choice index = prompt * n + j."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llamaserve.engine import Prompt
from llamaserve.errors import EngineError
from llamaserve.server import sse
from llamaserve.server.errors import invalid, to_api_error
from llamaserve.server.openai.errors import openai_body
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server.openai.choices import Output, Run, choice_arguments, finish_reason
from llamaserve.server.openai.logprobs import TokenText, completion_logprobs
from llamaserve.server.openai.protocol import CompletionRequest
from llamaserve.server.openai.responses import Envelope, completion_choice
from llamaserve.server.usage import drafts, usage


@dataclass(frozen=True)
class CompletionPlan:
    prompts: list[Prompt]  # per choice
    arguments: list[dict[str, Any]]  # per choice
    echoes: list[str]  # per choice: the prompt text when echo is on, else ""
    top_logprobs: int | None


def plan(req: CompletionRequest, model: LoadedModel, default_max_tokens: int) -> CompletionPlan:
    if req.echo and req.logprobs is not None:
        raise invalid("echo: cannot be combined with logprobs (prompt log-probabilities are not computed)")
    arguments = {"max_tokens": default_max_tokens, **req.sampling.arguments}
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


def _usage(outputs: list[Output], n: int) -> dict[str, int]:
    firsts = [o.stats for k, o in enumerate(outputs) if k % n == 0 and o.stats]  # one per prompt
    return usage(sum(s["prompt_tokens"] for s in firsts), sum(o.stats["completion_tokens"] for o in outputs if o.stats),
                 sum(s["cached_tokens"] for s in firsts), drafts(o.stats for o in outputs if o.stats))


def body(env: Envelope, comp: CompletionPlan, outputs: list[Output], text_of: TokenText, n: int) -> dict[str, Any]:
    choices = []
    for i, out in enumerate(outputs):
        assert out.stats is not None
        logprobs = None
        if comp.top_logprobs is not None:
            logprobs = completion_logprobs(out.logprobs, text_of, comp.top_logprobs, len(comp.echoes[i]))
        choices.append(completion_choice(i, comp.echoes[i] + out.joined, finish_reason(out.stats), logprobs))
    return env.completion(choices, _usage(outputs, n))


class CompletionEvents:
    """The SSE events of a streamed completion; aclose() ends the run."""

    def __init__(self, run: Run, env: Envelope, comp: CompletionPlan, include_usage: bool,
                 text_of: TokenText, n: int) -> None:
        self.run, self.env, self.comp = run, env, comp
        self.include_usage = include_usage
        self.text_of = text_of
        self.n = n
        self._iterator: AsyncIterator[bytes] | None = None
        self._text_event = sse.ChoiceTextEvents(
            lambda i: env.completion([completion_choice(i, sse.TEXT_HOLE, None)], None))

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncIterator[bytes]:
        outputs = [Output() for _ in self.comp.prompts]
        offsets = [len(e) for e in self.comp.echoes]
        for i, echo in enumerate(self.comp.echoes):
            if echo:
                yield sse.event(self.env.completion([completion_choice(i, echo, None)], None))
        try:
            async for i, pieces, records, stats in self.run.events():
                outputs[i].stats = stats
                text = "".join(pieces)
                if self.comp.top_logprobs is not None and (text or records):
                    logprobs = completion_logprobs(records, self.text_of, self.comp.top_logprobs, offsets[i])
                    offsets[i] += len(text)
                    yield sse.event(self.env.completion([completion_choice(i, text, None, logprobs)], None))
                elif text:
                    yield self._text_event(i, text)
                if stats is not None:
                    yield sse.event(self.env.completion([completion_choice(i, "", finish_reason(stats))], None))
            if self.include_usage:
                yield sse.event(self.env.completion([], _usage(outputs, self.n)))
        except EngineError as exc:
            yield sse.event(openai_body(to_api_error(exc)))
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self.run.close()
