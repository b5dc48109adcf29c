"""An asyncio HTTP load generator for OpenAI-compatible (/v1/completions) endpoints.

One task per concurrent client on one event loop (no thread per request). Every request
streams, so time to first token and inter-token latency are measured on the wire, and
asks for the same number of tokens with end-of-sequence tokens banned through
`logit_bias`, so every server produces equal output lengths.
"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import httpx


@dataclass
class LoadSpec:
    url: str  # server root, e.g. http://127.0.0.1:8000
    model: str = "default"
    prompt: str = "Write a long story about a lighthouse keeper who finds a map."
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

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def request_body(spec: LoadSpec) -> dict:
    return {
        "model": spec.model,
        "prompt": spec.prompt,
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {str(t): -100 for t in spec.banned_tokens},
        "cache_prompt": True,  # llama-server's default; asked of every server alike
    }


async def _send(client: httpx.AsyncClient, spec: LoadSpec, result: RequestResult) -> httpx.Response:
    """Send once more if the server had closed the idle keep-alive connection the request
    went out on: it never saw the request (the OpenAI SDK retries these too)."""
    request = client.build_request("POST", "/v1/completions", json=request_body(spec))
    try:
        return await client.send(request, stream=True)
    except httpx.RemoteProtocolError:
        result.retried = True
        return await client.send(request, stream=True)


async def one_request(client: httpx.AsyncClient, spec: LoadSpec) -> RequestResult:
    started = time.perf_counter()
    last = None
    result = RequestResult(ok=False)
    chunks = 0
    usage_tokens = None
    try:
        response = await _send(client, spec, result)
        try:
            if response.status_code != 200:
                body = (await response.aread())[:200].decode("utf-8", "replace")
                return RequestResult(ok=False, error=f"HTTP {response.status_code}: {body}",
                                     retried=result.retried)
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
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
        finally:
            await response.aclose()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return RequestResult(ok=False, error=f"{type(exc).__name__}: {exc}", retried=result.retried)
    result.ok = chunks > 0
    result.tokens = usage_tokens if usage_tokens is not None else chunks
    if not result.ok:
        result.error = "no tokens received"
    return result


async def run_level(spec: LoadSpec, concurrency: int, requests_per_client: int,
                    progress: bool = True) -> LevelResult:
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[RequestResult] = []
    total = concurrency * requests_per_client
    async with httpx.AsyncClient(base_url=spec.url, headers=headers, limits=limits,
                                 timeout=spec.timeout) as client:
        async def worker() -> None:
            for _ in range(requests_per_client):
                results.append(await one_request(client, spec))
                if progress:
                    print(f"\r  concurrency {concurrency}: {len(results)}/{total} requests",
                          end="", file=sys.stderr, flush=True)

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
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
    )


async def warm_up(spec: LoadSpec) -> None:
    async with httpx.AsyncClient(base_url=spec.url, timeout=spec.timeout) as client:
        result = await one_request(client, LoadSpec(**{**asdict(spec), "max_tokens": 4}))
        if not result.ok:
            raise RuntimeError(f"warm-up request failed: {result.error}")


def run(spec: LoadSpec, levels: list[int], requests_per_client: int = 4,
        progress: bool = True) -> list[LevelResult]:
    async def main() -> list[LevelResult]:
        await warm_up(spec)
        return [await run_level(spec, c, requests_per_client, progress) for c in levels]

    return asyncio.run(main())
