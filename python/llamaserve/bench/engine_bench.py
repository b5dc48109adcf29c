"""In-process engine figures: single-stream decode, batched decode, prompt processing."""
from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

from llamaserve.engine import Engine

PROMPT_TOKENS = 16


def _token_prompt(engine: Engine, n: int, variant: int = 0) -> list[int]:
    """Exactly n tokens: the model's BOS, then random ones, as llama.cpp's tools use. Streams
    decoded together get different prompts (variants), so that they generate different
    tokens, as llama-batched-bench's do: identical rows in a batch decode measurably faster."""
    bos = engine.tokenize("")
    words = random.Random(variant).sample(range(1000, engine.metadata["n_vocab"]), n - len(bos))
    return bos + words


def single_stream_decode(model: Path, threads: int, tokens: int, repeats: int = 5) -> float:
    """Decode tok/s of one Engine.stream, from its first token to its last (median)."""
    with Engine.load(model, n_ctx=PROMPT_TOKENS + tokens + 16, n_parallel=1,
                     n_threads=threads) as engine:
        engine.generate("warm up", max_tokens=8)
        rates = []
        for _ in range(repeats):
            stream = engine.stream(_token_prompt(engine, PROMPT_TOKENS), max_tokens=tokens + 1,
                                   temperature=0, ignore_eos=True)
            next(stream)
            start = time.perf_counter()
            count = sum(1 for _ in stream)
            rates.append(count / (time.perf_counter() - start))
        return statistics.median(rates)


def batched_decode(model: Path, threads: int, tokens: int, width: int, repeats: int = 3) -> float:
    """Aggregate decode tok/s of `width` concurrent astreams once all have a first token."""

    async def one_round(engine: Engine) -> float:
        streams = [engine.astream(_token_prompt(engine, PROMPT_TOKENS, i), max_tokens=tokens, temperature=0,
                                  ignore_eos=True) for i in range(width)]
        arrivals: list[list[float]] = [[] for _ in streams]

        async def consume(i: int) -> None:
            async for _ in streams[i]:
                arrivals[i].append(time.perf_counter())

        await asyncio.gather(*(consume(i) for i in range(width)))
        start = max(a[0] for a in arrivals)
        end = max(a[-1] for a in arrivals)
        return sum(1 for a in arrivals for t in a if t > start) / (end - start)

    async def run() -> float:
        with Engine.load(model, n_ctx=PROMPT_TOKENS + tokens + 16, n_parallel=width,
                         n_threads=threads) as engine:
            await engine.agenerate("warm up", max_tokens=4)
            return statistics.median([await one_round(engine) for _ in range(repeats)])

    return asyncio.run(run())


def prompt_processing(model: Path, threads: int, prompt_tokens: int = 512, repeats: int = 3) -> float:
    """Prompt tok/s: prompt length over the time to the first token (median)."""
    with Engine.load(model, n_ctx=prompt_tokens + 16, n_parallel=1, n_threads=threads) as engine:
        engine.generate("warm up", max_tokens=2)
        rates = []
        for _ in range(repeats):
            done = engine.generate(_token_prompt(engine, prompt_tokens), max_tokens=1)
            rates.append(prompt_tokens / done.time_to_first_token)
        return statistics.median(rates)
