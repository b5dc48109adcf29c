"""Running the choices of one /v1 request: n engine streams (each its own lease and
Generation), read together as one sequence of events; response ids and fingerprints."""
from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import llamaserve
from llamaserve.engine import Prompt
from llamaserve.errors import EngineError, RequestCancelled
from llamaserve.generation_params import SEED_MAX
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.results import TokenLogprob
from llamaserve.server.generation import Generation, GenerationService
from llamaserve.server.openai.responses import Envelope


def envelope(prefix: str, model: LoadedModel) -> Envelope:
    return Envelope(f"{prefix}-{secrets.token_hex(12)}", int(time.time()), model.name, fingerprint(model))


def fingerprint(model: LoadedModel) -> str:
    """Changes when the server version or the served model file changes."""
    meta = model.engine.metadata
    key = f"{llamaserve.__version__}:{model.path.name}:{meta.get('file_size')}:{model.n_gpu_layers}"
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def finish_reason(stats: dict[str, Any]) -> str:
    """OpenAI's name for how a choice ended. OpenAI has none for a request the engine
    cancelled (the server shutting down) or failed: those are errors, not quiet stops."""
    reason = stats.get("finish_reason")
    if reason in ("stop", "length"):
        return reason
    if reason == "cancelled":
        raise RequestCancelled("the request was cancelled before it finished (the server is shutting down)")
    raise EngineError(stats.get("error") or "generation failed")


def choice_arguments(arguments: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Per-choice engine arguments: with a seed, choice i gets seed + i."""
    if "seed" not in arguments:
        return [dict(arguments) for _ in range(n)]
    return [{**arguments, "seed": (arguments["seed"] + i) % (SEED_MAX + 1)} for i in range(n)]


@dataclass
class Output:
    """What one choice has produced so far."""
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    stats: dict[str, Any] | None = None

    @property
    def joined(self) -> str:
        return "".join(self.text)


class Run:
    """The engine streams of one request's choices. Submitting all of them happens before
    any response starts, so a full queue or an over-long prompt fails the whole request."""

    def __init__(self, service: GenerationService, model_name: str | None,
                 prompts: Sequence[Prompt], arguments: Sequence[dict[str, Any]]) -> None:
        self.generations: list[Generation] = []
        self.logprobs = any(a.get("logprobs") is not None for a in arguments)
        try:
            for prompt, args in zip(prompts, arguments, strict=True):
                self.generations.append(service.submit(model_name, prompt, args))
        except BaseException:  # QueueFull, ContextLengthExceeded, a bad argument...
            self.close()
            raise

    def close(self) -> None:
        for g in self.generations:
            g.close()

    async def events(self) -> AsyncIterator[tuple[int, list[str], list[TokenLogprob], dict[str, Any] | None]]:
        """(choice, new text pieces, new logprob records, stats once finished else None),
        across all choices as they come. Engine failures raise EngineError."""
        streams = [g.stream for g in self.generations]
        if len(streams) == 1:  # the usual n=1: no task and no asyncio.wait per token
            async for event in self._single_events(streams[0]):
                yield event
            return
        pending: dict[asyncio.Future[list[str]], int] = {
            asyncio.ensure_future(s.next_pieces()): i for i, s in enumerate(streams)}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f]):
                    i = pending.pop(future)
                    pieces = future.result()
                    records = streams[i].take_token_logprobs() if self.logprobs else []
                    if pieces:
                        pending[asyncio.ensure_future(streams[i].next_pieces())] = i
                        yield i, pieces, records, None
                    else:
                        self.generations[i].close()
                        yield i, [], records, streams[i].stats
        finally:
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.close()

    async def _single_events(self, stream: Any) -> AsyncIterator[
            tuple[int, list[str], list[TokenLogprob], dict[str, Any] | None]]:
        try:
            while pieces := await stream.next_pieces():
                yield 0, pieces, stream.take_token_logprobs() if self.logprobs else [], None
            records = stream.take_token_logprobs() if self.logprobs else []
            self.generations[0].close()
            yield 0, [], records, stream.stats
        finally:
            self.close()

    async def collect(self) -> list[Output]:
        outputs = [Output() for _ in self.generations]
        async for i, pieces, records, stats in self.events():
            outputs[i].text.extend(pieces)
            outputs[i].logprobs.extend(records)
            if stats is not None:
                outputs[i].stats = stats
        return outputs
