#!/usr/bin/env python3
"""Soak: `llamaserve serve` under many clients for minutes, mixed APIs, streamed and not, a
third of the requests vanishing mid-way; it must lose no token, answer no 5xx, end with
every slot free and keep its memory flat.

    python benchmarks/soak.py [--duration 180] [--clients 32] [--parallel 8] [--tokens 16]
    python benchmarks/soak.py --duration 20 --clients 8        # a smoke run

Each client loops over POST /api/v1/generate, /api/v1/generate/stream, /v1/completions and
/v1/chat/completions (the /v1 ones streamed and not) with prompts of its own. End-of-sequence
is banned (ignore_eos on the native API, logit_bias -100 on the model's end-of-generation
tokens under /v1), so every completed request carries exactly --tokens tokens: the usage says
so, and a stream's chunks do too (under /v1 each chunk's log-probabilities list its tokens;
a native chunk holds one token or, where a token ends inside a UTF-8 character, none).
Only a chat may end sooner, on its template's end-of-turn string (counted apart).
A vanishing request closes its connection after a few streamed chunks, or after a random
delay when it is not streamed. After the run and a grace period, /health must show no busy
slot; the server's RSS is read from /proc after a warm-up and at the end.
Prints a table; exits 1 on any lost token, 5xx, failed request or busy slot.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import free_port, wait_ready  # noqa: E402

import llamaserve  # noqa: E402
from llamaserve.default_model import BENCHMARK_MODEL, MODEL_HELP, named_model  # noqa: E402

APIS = ("generate", "generate/stream", "completions", "completions+stream", "chat", "chat+stream")
WORDS = ("river", "lamp", "orbit", "violin", "harbor", "cactus", "glacier", "pepper", "lantern", "meadow",
         "comet", "quartz", "falcon", "saddle", "tunnel", "walnut")


@dataclass
class Tally:
    """What the clients saw, per API."""
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (api, outcome) -> n
    tokens: int = 0  # tokens of completed requests
    failures: list[str] = field(default_factory=list)  # the first few, for the report

    def add(self, api: str, outcome: str, why: str | None = None) -> None:
        self.counts[(api, outcome)] += 1
        if why is not None and len(self.failures) < 8:
            self.failures.append(f"{api}: {outcome}: {why[:300]}")

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)


FAILURES = ("lost tokens", "5xx", "failed", "broken")


def request_body(api: str, prompt: str, tokens: int, banned: dict[str, int], model: str) -> tuple[str, dict]:
    """(path, JSON body) of one request."""
    if api.startswith("generate"):
        return "/api/v1/" + api, {"prompt": prompt, "max_tokens": tokens, "ignore_eos": True}
    stream = api.endswith("+stream")
    body: dict[str, Any] = {"model": model, "max_tokens": tokens, "logit_bias": banned, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if api.startswith("chat"):
        return "/v1/chat/completions", {**body, "messages": [{"role": "user", "content": prompt}], "logprobs": True}
    return "/v1/completions", {**body, "prompt": prompt, "logprobs": 0}


def counted_tokens(api: str, chunk: dict) -> int:
    """The tokens one response (or one streamed chunk) lists: log-probability entries under /v1,
    one per non-empty piece on the native stream."""
    if api.startswith("generate"):
        return 1 if chunk.get("token") else 0
    total = 0
    for choice in chunk.get("choices") or ():
        logprobs = choice.get("logprobs") or {}
        total += len(logprobs.get("content") or logprobs.get("tokens") or ())
    return total


def finish_of(api: str, chunk: dict) -> str | None:
    if api.startswith("generate"):
        return chunk.get("finish_reason") if chunk.get("finished", True) else None
    return next((c.get("finish_reason") for c in chunk.get("choices") or () if c.get("finish_reason")), None)


def judge(api: str, tally: Tally, tokens: int, usage: dict | None, counted: int, finish: str | None,
          exact: bool) -> None:
    """Count one completed exchange. `exact`: `counted` must equal the usage (else it is an
    upper bound: native chunks)."""
    if not usage or finish is None:
        tally.add(api, "broken", f"no usage or finish reason (finish {finish!r}, usage {usage!r})")
        return
    used = usage.get("completion_tokens")
    if finish == "stop" and api.startswith("chat") and used is not None and counted == used < tokens:
        tally.add(api, "ended by the template")  # the chat template's end-of-turn string
        tally.tokens += used
        return
    if finish != "length" or used != tokens or (counted != used if exact else counted > used):
        tally.add(api, "lost tokens", f"finish {finish!r}, usage {used}, counted {counted}, max_tokens {tokens}")
        return
    tally.add(api, "completed")
    tally.tokens += used


async def one_request(client: httpx.AsyncClient, api: str, body: dict, path: str, tokens: int, tally: Tally,
                      vanish: random.Random | None) -> None:
    stream = api.endswith("stream")
    tally.add(api, "requests")
    try:
        if stream:
            await _streamed(client, api, path, body, tokens, tally, vanish.randint(1, 4) if vanish else None)
        elif vanish is not None:
            try:
                response = await asyncio.wait_for(client.post(path, json=body), vanish.uniform(0.05, 2.0))
            except asyncio.TimeoutError:  # cancelled: the connection is closed mid-request
                tally.add(api, "vanished")
                return
            _answered(api, response, tokens, tally)
        else:
            _answered(api, await client.post(path, json=body), tokens, tally)
    except httpx.HTTPError as exc:
        tally.add(api, "failed", repr(exc))


def _answered(api: str, response: httpx.Response, tokens: int, tally: Tally) -> None:
    if response.status_code >= 500:
        tally.add(api, "5xx", f"{response.status_code} {response.text}")
    elif response.status_code != 200:
        tally.add(api, "failed", f"{response.status_code} {response.text}")
    else:
        body = response.json()
        judge(api, tally, tokens, body.get("usage"), counted_tokens(api, body) if not api.startswith("generate")
              else body["usage"]["completion_tokens"], finish_of(api, body), exact=True)


async def _streamed(client: httpx.AsyncClient, api: str, path: str, body: dict, tokens: int, tally: Tally,
                    vanish_after: int | None) -> None:
    async with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode("utf-8", "replace")
            tally.add(api, "5xx" if response.status_code >= 500 else "failed", f"{response.status_code} {text}")
            return
        chunks = counted = 0
        usage, finish = None, None
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            if "error" in chunk:
                tally.add(api, "failed", json.dumps(chunk))
                return
            counted += counted_tokens(api, chunk)
            finish = finish_of(api, chunk) or finish
            usage = chunk.get("usage") or usage
            chunks += 1
            if vanish_after is not None and chunks >= vanish_after and not finish:
                tally.add(api, "vanished")  # leaving the block closes the connection
                return
    judge(api, tally, tokens, usage, counted, finish, exact=not api.startswith("generate"))


async def client_loop(index: int, client: httpx.AsyncClient, args: argparse.Namespace, banned: dict[str, int],
                      model: str, tally: Tally, until: float, rounds: int | None = None) -> None:
    """Requests back to back until `until` (or `rounds` of them, none vanishing: the warm-up)."""
    rng = random.Random(args.seed * 1000 + index)
    n = 0
    while time.monotonic() < until and (rounds is None or n < rounds):
        api = APIS[(index + n) % len(APIS)]
        prompt = f"Client {index}, note {n}: " + " ".join(rng.choices(WORDS, k=6))
        path, body = request_body(api, prompt, args.tokens, banned, model)
        vanish = rng if rounds is None and rng.random() < args.vanish else None
        await one_request(client, api, body, path, args.tokens, tally, vanish)
        n += 1


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def settled(url: str, grace: float) -> dict:
    """/health once no slot is busy and nothing is queued, or when the grace period is over."""
    deadline = time.monotonic() + grace
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while True:
            health = (await client.get("/health")).json()
            if (health["slots"]["busy"] == 0 and health["queue_depth"] == 0) or time.monotonic() > deadline:
                return health
            await asyncio.sleep(0.1)


async def soak(url: str, pid: int, args: argparse.Namespace, banned: dict[str, int], model: str) -> dict:
    limits = httpx.Limits(max_connections=args.clients * 2, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        warm = Tally()
        forever = time.monotonic() + 3600
        await asyncio.gather(*(client_loop(i, client, args, banned, model, warm, forever, rounds=1)
                               for i in range(args.clients)))
        await settled(url, args.grace)
        rss_start = rss_bytes(pid)
        tally = Tally()
        started = time.monotonic()
        await asyncio.gather(*(client_loop(i, client, args, banned, model, tally, started + args.duration)
                               for i in range(args.clients)))
        elapsed = time.monotonic() - started
    health = await settled(url, args.grace)
    return {"tally": tally, "warm": warm, "elapsed": elapsed, "health": health,
            "rss_start": rss_start, "rss_end": rss_bytes(pid)}


def report(result: dict, args: argparse.Namespace) -> bool:
    tally, health = result["tally"], result["health"]
    outcomes = ("requests", "completed", "ended by the template", "vanished", *FAILURES)
    print(f"\nsoak: {args.clients} clients, {args.parallel} slots, {args.tokens} tokens a request, "
          f"{result['elapsed']:.0f} s")
    header = ["api", *outcomes]
    rows = [[api, *(str(tally.counts[(api, o)]) for o in outcomes)] for api in APIS]
    rows.append(["all", *(str(tally.total(o)) for o in outcomes)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    growth = result["rss_end"] - result["rss_start"]
    print(f"\ntokens of completed requests  {tally.tokens} ({tally.tokens / result['elapsed']:.1f} tok/s)")
    print(f"slots busy at the end         {health['slots']['busy']} of {health['slots']['total']}, "
          f"queue {health['queue_depth']}")
    print(f"server RSS                    {result['rss_start'] / 2**20:.1f} MB after warm-up, "
          f"{result['rss_end'] / 2**20:.1f} MB at the end ({growth / 2**20:+.1f} MB, "
          f"{growth / result['rss_start']:+.1%})")
    warm_failures = sum(result["warm"].total(o) for o in FAILURES)
    for line in result["warm"].failures + tally.failures:
        print("  " + line)
    ok = not any(tally.total(o) for o in FAILURES) and not warm_failures and health["slots"]["busy"] == 0 \
        and health["queue_depth"] == 0 and tally.total("completed") > 0
    print("PASS" if ok else "FAIL")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BENCHMARK_MODEL, help=MODEL_HELP)
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (20 for a smoke run)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=8, help="the server's slots")
    parser.add_argument("--tokens", type=int, default=16, help="max_tokens of every request")
    parser.add_argument("--ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--vanish", type=float, default=1 / 3, help="share of requests that vanish mid-way")
    parser.add_argument("--grace", type=float, default=5, help="seconds the slots get to free up at the end")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a request may take")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model_name, model = named_model(args.model)
    with llamaserve.Engine.load(model, n_ctx=64, n_parallel=1) as engine:
        banned = {str(t): -100 for t in engine.metadata["eog_tokens"]}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "llamaserve", "serve", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--parallel", str(args.parallel), "--ctx", str(args.ctx), "--log-level", "warning",
            "--drain-timeout", "10"]
    print(f"model {model_name}; {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    server = subprocess.Popen(argv)
    try:
        wait_ready(url, server)
        result = asyncio.run(soak(url, server.pid, args, banned, model.stem))
    finally:
        server.terminate()
        server.wait(timeout=60)  # its drain timeout bounds a clean shutdown: longer is a failure
    return 0 if report(result, args) else 1


if __name__ == "__main__":
    sys.exit(main())
