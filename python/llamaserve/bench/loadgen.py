"""An asyncio HTTP load generator for OpenAI-compatible (/v1/completions) endpoints.

One task per concurrent client on one event loop (no thread per request), each with one
keep-alive connection of the lean client in sse_client. Every request streams, so time to
first token and inter-token latency are measured on the wire, and asks for the same number
of tokens with end-of-sequence tokens banned through `logit_bias`, so every server
produces equal output lengths.
"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

from llamaserve.bench import sse_client


SUBJECTS = ("lighthouse keeper who finds a map", "baker who can taste colours",
            "robot learning to garden", "sailor lost in fog", "girl who talks to owls",
            "clockmaker's last clock", "city under the ice", "detective afraid of the dark",
            "dragon that collects stamps", "village with no music", "astronaut's letter home",
            "river that flows uphill", "painter who paints the future", "train that never stops",
            "fox and the winter market", "library that rearranges itself")
# Clients send different prompts, so their outputs differ as real traffic does: a batch of
# identical sequences decodes measurably faster than one of different sequences.
PROMPTS = tuple(f"Write a long story about a {subject}." for subject in SUBJECTS)
NO_TOKENS = "no tokens received"


@dataclass
class LoadSpec:
    url: str  # server root, e.g. http://127.0.0.1:8000
    model: str = "default"
    prompts: tuple[str, ...] = PROMPTS  # request i sends prompts[i % len(prompts)]
    max_tokens: int = 64
    banned_tokens: tuple[int, ...] = ()  # end-of-sequence ids, banned so lengths are equal
    api_key: str | None = None
    timeout: float = 300.0


@dataclass
class RequestResult:
    ok: bool
    tokens: int = 0
    ttft: float = 0.0
    gaps: list[float] = field(default_factory=list)
    error: str = ""
    retried: bool = False
    model: str = ""  # as the server named it in its reply


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    retried: int  # requests sent twice: the server had closed their keep-alive connection
    wall_s: float
    output_tok_s: float
    request_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    client_cpu_pct: float
    first_error: str = ""  # what went wrong with the first failed request, if any
    model: str = ""  # the model that answered, as the server names it

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def request_body(spec: LoadSpec, index: int) -> dict:
    return {
        "model": spec.model,
        "prompt": spec.prompts[index % len(spec.prompts)],
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {str(t): -100 for t in spec.banned_tokens},
    }


async def _stream(conn: sse_client.Connection, spec: LoadSpec, index: int, result: RequestResult) -> None:
    started = time.perf_counter()
    last = None
    chunks = 0
    body = json.dumps(request_body(spec, index)).encode()
    async for data in conn.post_events("/v1/completions", body):
        if data == b"[DONE]":
            continue
        event = json.loads(data)
        if not result.model:
            result.model = event.get("model") or ""
        if event.get("usage"):
            result.tokens = event["usage"].get("completion_tokens") or 0
        choices = event.get("choices") or []
        if not choices or not choices[0].get("text"):
            continue
        now = time.perf_counter()
        if last is None:
            result.ttft = now - started
        else:
            result.gaps.append(now - last)
        last = now
        chunks += 1
    result.ok = chunks > 0
    result.tokens = result.tokens or chunks
    if not result.ok:
        result.error = NO_TOKENS


async def one_request(conn: sse_client.Connection, spec: LoadSpec, index: int = 0) -> RequestResult:
    result = RequestResult(ok=False)
    try:
        await asyncio.wait_for(_stream(conn, spec, index, result), spec.timeout)
    except (sse_client.HTTPError, OSError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
        await conn.close()
        result.ok = False
        result.error = str(exc) if isinstance(exc, sse_client.StatusError) else f"{type(exc).__name__}: {exc}"
    result.retried = conn.resent
    return result


def _connection(spec: LoadSpec) -> sse_client.Connection:
    return sse_client.Connection(spec.url, {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {})


async def run_level(spec: LoadSpec, concurrency: int, requests_per_client: int,
                    progress: bool = True) -> LevelResult:
    results: list[RequestResult] = []
    total = concurrency * requests_per_client

    async def worker(client_index: int) -> None:
        conn = _connection(spec)  # one keep-alive connection per client
        try:
            for k in range(requests_per_client):
                results.append(await one_request(conn, spec, client_index + k * concurrency))
                if progress:
                    print(f"\r  concurrency {concurrency}: {len(results)}/{total} requests",
                          end="", file=sys.stderr, flush=True)
        finally:
            await conn.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if progress:
        print(file=sys.stderr)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    good = [r for r in results if r.ok]
    gaps = [g for r in good for g in r.gaps]
    return LevelResult(
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(good),
        retried=sum(r.retried for r in results),
        wall_s=wall,
        output_tok_s=sum(r.tokens for r in good) / wall,
        request_s=len(good) / wall,
        ttft_p50_ms=1000 * percentile([r.ttft for r in good], 50),
        ttft_p99_ms=1000 * percentile([r.ttft for r in good], 99),
        itl_p50_ms=1000 * percentile(gaps, 50),
        itl_p99_ms=1000 * percentile(gaps, 99),
        client_cpu_pct=100 * cpu / wall,
        first_error=next((r.error for r in results if not r.ok), ""),
        model=next((r.model for r in good if r.model), ""),
    )


async def warm_up(spec: LoadSpec) -> None:
    conn = _connection(spec)
    try:
        result = await one_request(conn, LoadSpec(**{**asdict(spec), "max_tokens": 4}))
    finally:
        await conn.close()
    if not result.ok:
        hint = (" (the model ended its reply at once: --ban gives its end-of-sequence token ids)"
                if result.error == NO_TOKENS else "")
        raise RuntimeError(f"warm-up request failed: {result.error}{hint}")


def run(spec: LoadSpec, levels: list[int], requests_per_client: int = 4,
        progress: bool = True) -> list[LevelResult]:
    async def main() -> list[LevelResult]:
        await warm_up(spec)
        return [await run_level(spec, c, requests_per_client, progress) for c in levels]

    return asyncio.run(main())
