"""Running the choices of one /v1 request: n engine streams (each its own lease and
helper Generation), read together as one sequence of events; token log-probabilities in
OpenAI's two shapes; ids and fingerprints."""
from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import llamaserve
from llamaserve.engine import Prompt, TokenLogprob
from llamaserve.server.generation import Generation, GenerationService
from llamaserve.server.openai_schemas import SEED_RANGE, Envelope
from llamaserve.server.runtime import LoadedModel

LOGPROB_FLOOR = -9999.0  # what OpenAI reports for a probability of (about) zero; never -inf


def envelope(prefix: str, model: LoadedModel) -> Envelope:
    return Envelope(f"{prefix}-{secrets.token_hex(12)}", int(time.time()), model.name, fingerprint(model))


def fingerprint(model: LoadedModel) -> str:
    """Changes when the server version or the served model file changes."""
    meta = model.engine.metadata
    key = f"{llamaserve.__version__}:{model.path.name}:{meta.get('file_size')}:{model.n_gpu_layers}"
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def finish_reason(stats: dict[str, Any]) -> str:
    return "length" if stats.get("finish_reason") == "length" else "stop"


def choice_arguments(arguments: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Per-choice engine arguments: with a seed, choice i gets seed + i."""
    if "seed" not in arguments:
        return [dict(arguments) for _ in range(n)]
    return [{**arguments, "seed": (arguments["seed"] + i) % SEED_RANGE} for i in range(n)]


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
                model = service.host.acquire(model_name)
                try:
                    stream = model.engine.astream(prompt, **args)
                except BaseException:
                    service.host.release(model)
                    raise
                self.generations.append(Generation(service, model, stream))
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


# -- log-probabilities ---------------------------------------------------------------------------

def _finite(value: float) -> float:
    return value if math.isfinite(value) else LOGPROB_FLOOR


class TokenText:
    """Token id -> its bytes and text (cached; invalid UTF-8 pieces written as \\x escapes)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.cache: dict[int, tuple[bytes, str]] = {}

    def __call__(self, token: int) -> tuple[bytes, str]:
        hit = self.cache.get(token)
        if hit is None:
            raw = self.engine.token_bytes(token)
            hit = self.cache[token] = (raw, raw.decode("utf-8", errors="backslashreplace"))
        return hit


def chat_logprobs(records: Sequence[TokenLogprob], text_of: TokenText, top: int) -> list[dict[str, Any]]:
    """OpenAI chat shape: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]."""
    out = []
    for token, logprob, alternatives in records:
        raw, text = text_of(token)
        entries = []
        for alt, alt_logprob in alternatives[:top]:
            alt_raw, alt_text = text_of(alt)
            entries.append({"token": alt_text, "logprob": _finite(alt_logprob), "bytes": list(alt_raw)})
        out.append({"token": text, "logprob": _finite(logprob), "bytes": list(raw), "top_logprobs": entries})
    return out


def completion_logprobs(records: Sequence[TokenLogprob], text_of: TokenText, top: int,
                        offset: int = 0) -> dict[str, Any]:
    """OpenAI completions shape: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens, logprobs, tops, offsets = [], [], [], []
    for token, logprob, alternatives in records:
        _, text = text_of(token)
        tokens.append(text)
        logprobs.append(_finite(logprob))
        tops.append({text_of(alt)[1]: _finite(lp) for alt, lp in alternatives[:top]} if top else None)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}
