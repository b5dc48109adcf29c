"""`llamaserve bench spec`: one client, requests whose output repeats its prompt (or does not),
to measure what speculative decoding buys where it should (an edit of code, a summary that
quotes its source) and what it costs where drafts mostly fail (free writing).

Every run sends a fresh prompt (random identifiers, names and numbers inside), so no prefix
cache helps and the figure is decode speed with prefill included: completion tokens over the
wall time of one non-streamed /v1/completions request. The prompt is ChatML (SmolLM2-Instruct's
template) written out as text, greedy, with end-of-sequence tokens banned through logit_bias so
that every run produces max_tokens tokens; the body carries no server-specific field unless the
caller adds one (`fields`), so every server runs its defaults.
"""
from __future__ import annotations

import http.client
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

from llamaserve.bench.spec_prompts import WORKLOADS, prompt_for

SMOLLM2_END_TOKENS = (0, 1, 2)  # <|endoftext|>, <|im_start|>, <|im_end|>


@dataclass
class SpecLoadSpec:
    url: str  # server root, e.g. http://127.0.0.1:8000
    model: str = "default"
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    runs: int = 3  # per workload; the figure is the best of them
    max_tokens: int = 256
    banned_tokens: tuple[int, ...] = SMOLLM2_END_TOKENS  # banned (logit_bias) so every run has max_tokens
    fields: dict = field(default_factory=dict)  # server-specific fields a row adds, e.g. {"speculative": False}
    seed: int | str | None = None  # None: a new one per call, so a server's cache never holds a prompt
    warmup: bool = True  # one short untimed request first: a fresh server's first one pays one-off costs
    api_key: str | None = None
    timeout: float = 600.0


@dataclass
class RunResult:
    workload: str
    run: int
    wall_s: float
    tokens: int
    prompt_tokens: int
    tok_s: float  # tokens / wall_s: prefill included
    drafted: int | None  # as the server reports them; None when it does not
    accepted: int | None
    error: str = ""


@dataclass
class WorkloadResult:
    workload: str
    runs: int
    best_tok_s: float
    median_tok_s: float
    tokens: int  # per run (the median): max_tokens unless a server stopped early
    prompt_tokens: int  # per run (the median)
    drafted: int | None  # summed over the runs that report it
    accepted: int | None
    errors: int
    first_error: str = ""
    results: list[RunResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def request_body(spec: SpecLoadSpec, prompt: str) -> dict:
    body = {"model": spec.model, "prompt": prompt, "max_tokens": spec.max_tokens, "temperature": 0}
    if spec.banned_tokens:
        body["logit_bias"] = {str(t): -100 for t in spec.banned_tokens}
    return {**body, **spec.fields}


def drafts(reply: dict) -> tuple[int | None, int | None]:
    """(drafted, accepted) tokens as the server reports them: OpenAI's prediction fields in
    usage (llamaserve), or llama-server's timings; (None, None) when neither is there."""
    details = (reply.get("usage") or {}).get("completion_tokens_details") or {}
    if "accepted_prediction_tokens" in details:
        accepted = int(details["accepted_prediction_tokens"] or 0)
        return accepted + int(details.get("rejected_prediction_tokens") or 0), accepted
    timings = reply.get("timings") or {}
    if "draft_n" in timings:
        return int(timings["draft_n"]), int(timings.get("draft_n_accepted") or 0)
    return None, None


def one_request(spec: SpecLoadSpec, workload: str, run: int, prompt: str) -> RunResult:
    """One non-streamed request on a fresh connection, timed from the first byte sent to the
    last byte read (the connection is opened before the clock starts)."""
    parts = urlsplit(spec.url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname or "127.0.0.1", parts.port, timeout=spec.timeout)
    headers = {"Content-Type": "application/json"}
    if spec.api_key:
        headers["Authorization"] = f"Bearer {spec.api_key}"
    body = json.dumps(request_body(spec, prompt)).encode()
    wall = 0.0
    try:
        connection.connect()
        started = time.perf_counter()
        connection.request("POST", parts.path.rstrip("/") + "/v1/completions", body, headers)
        response = connection.getresponse()
        data = response.read()
        wall = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200].decode('utf-8', 'replace')}")
        reply = json.loads(data)
        usage = reply.get("usage") or {}
        tokens = int(usage.get("completion_tokens") or 0)
        drafted, accepted = drafts(reply)
        return RunResult(workload, run, wall, tokens, int(usage.get("prompt_tokens") or 0),
                         tokens / wall if wall > 0 else 0.0, drafted, accepted,
                         "" if tokens else "no tokens in the reply")
    except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure and goes on
        return RunResult(workload, run, wall, 0, 0, 0.0, None, None, f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def _summed(values: list[int | None]) -> int | None:
    reported = [v for v in values if v is not None]
    return sum(reported) if reported else None


def run_workload(spec: SpecLoadSpec, workload: str, seed: int | str) -> WorkloadResult:
    results = [one_request(spec, workload, k, prompt_for(workload, seed, k)) for k in range(spec.runs)]
    good = [r for r in results if not r.error]
    failed = [r for r in results if r.error]
    rates = [r.tok_s for r in good]
    return WorkloadResult(
        workload=workload, runs=len(results),
        best_tok_s=max(rates) if rates else float("nan"),
        median_tok_s=statistics.median(rates) if rates else float("nan"),
        tokens=int(statistics.median([r.tokens for r in good])) if good else 0,
        prompt_tokens=int(statistics.median([r.prompt_tokens for r in good])) if good else 0,
        drafted=_summed([r.drafted for r in good]), accepted=_summed([r.accepted for r in good]),
        errors=len(failed), first_error=failed[0].error if failed else "", results=results)


WARMUP_PROMPT = "The three primary colours are"  # shares no prefix with the workloads' prompts


def run(spec: SpecLoadSpec) -> list[WorkloadResult]:
    """Every workload of `spec` in turn, `spec.runs` runs each, after the warm-up if asked."""
    seed = spec.seed if spec.seed is not None else random.SystemRandom().getrandbits(48)
    if spec.warmup:
        one_request(replace(spec, max_tokens=min(8, spec.max_tokens)), "warmup", -1, WARMUP_PROMPT)
    return [run_workload(spec, workload, seed) for workload in spec.workloads]
