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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

SYSTEM = "You are a careful assistant. Follow the instructions exactly."
SMOLLM2_END_TOKENS = (0, 1, 2)  # <|endoftext|>, <|im_start|>, <|im_end|>

_NOUNS = ("order", "sensor", "invoice", "patient", "shipment", "ticket", "account", "sample",
          "reading", "listing", "booking", "payment", "device", "review", "trial", "batch")
_FIELDS = ("score", "rating", "weight", "confidence", "priority", "margin", "quality", "signal")
_FLAGS = ("archived", "disabled", "flagged", "deleted", "hidden", "expired", "blocked", "stale")
_FIRST = ("Amara", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines",
          "Jonas", "Keiko", "Lars", "Maren", "Nikhil", "Olga", "Pavel", "Rosa", "Soren", "Talia",
          "Umar", "Vera", "Wendell", "Ximena", "Yusuf", "Zofia")
_LAST = ("Okafor", "Lindqvist", "Moreau", "Castellano", "Haddad", "Novak", "Brennan", "Iwasaki",
         "Kowalski", "Ferreira", "Adeyemi", "Halvorsen", "Markovic", "Delacroix", "Sandoval")
_TOWNS = ("Eastbrook", "Port Calder", "Millhaven", "Ravensford", "Kestrel Bay", "Oakmere",
          "Ashby Cross", "Northwick", "Silverdale", "Thornbury", "Wexmoor", "Glenhollow")
_PRODUCTS = ("water filters", "bicycle frames", "solar panels", "ceramic tiles", "hearing aids",
             "seed potatoes", "wool blankets", "printer cartridges", "garden hoses", "oat milk")
_CHARACTERS = ("retired clockmaker", "young cartographer", "nervous beekeeper", "travelling violinist",
               "stubborn ferry captain", "curious lighthouse cat", "exiled astronomer", "night-shift baker",
               "apprentice glassblower", "forgetful wizard", "marathon runner", "museum guard")
_GOALS = ("finds a map that redraws itself every night", "must deliver a letter before the first snow",
          "hears a song nobody else can hear", "inherits a house with one locked room",
          "is asked to judge a contest of impossible inventions", "loses their shadow at a fair",
          "discovers the town clock has been running backwards", "has to return a stolen comet")
_PLACES = ("a floating market", "a city built on stilts", "a desert observatory", "an island of bells",
           "a mountain monastery", "a train that never stops", "a village under the ice", "a canal town")


def chatml(user: str, system: str = SYSTEM) -> str:
    """The conversation as SmolLM2-Instruct's template writes it, ready for the assistant."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def edit_prompt(rng: random.Random) -> str:
    """Repeat two functions of Python with one parameter renamed (a ~455-token prompt): nearly
    every output token is in the prompt, the case n-gram drafts are for."""
    noun, fld, flag = rng.choice(_NOUNS), rng.choice(_FIELDS), rng.choice(_FLAGS)
    limit, default, bucket = rng.randint(5, 95), round(rng.uniform(0.1, 0.9), 2), rng.randint(3, 12)
    window, penalty = rng.randint(2, 30), round(rng.uniform(0.5, 0.99), 2)
    code = f'''def filter_{noun}s(records: list[dict], threshold: float, *, key: str = "{fld}") -> list[dict]:
    """Return at most {limit} {noun}s whose {fld} is at least threshold, best first.

    Records without a {fld} are skipped, and so are the ones marked as {flag}.
    """
    kept = []
    for record in records:
        value = record.get(key)
        if value is None or record.get("{flag}", False):
            continue
        if value >= threshold:
            kept.append(record)
    kept.sort(key=lambda r: (r[key], r.get("id", 0)), reverse=True)
    return kept[:{limit}]


def summarize_{noun}s(records: list[dict], threshold: float = {default}, buckets: int = {bucket}) -> dict:
    """Count the {noun}s above threshold per bucket of {fld}, and the mean of the rest.

    A {noun} older than {window} days weighs {penalty} of a recent one.
    """
    counts = [0] * buckets
    below_total, below_weight = 0.0, 0.0
    for record in records:
        value = record.get("{fld}")
        if value is None:
            continue
        weight = {penalty} if record.get("age_days", 0) > {window} else 1.0
        if value >= threshold:
            index = min(buckets - 1, int((value - threshold) / (1.0 - threshold) * buckets))
            counts[index] += 1
        else:
            below_total += value * weight
            below_weight += weight
    mean_below = below_total / below_weight if below_weight else 0.0
    return {{"threshold": threshold, "counts": counts, "mean_below": round(mean_below, 4)}}
'''
    return chatml("Repeat this code exactly, but rename the parameter `threshold` to `min_score`:\n\n"
                  f"```python\n{code}```")


def quote_prompt(rng: random.Random) -> str:
    """Summarize a report quoting its key sentences verbatim (a ~450-token prompt): long runs
    of the output are in the prompt, shorter ones than in an edit."""
    town, product = rng.choice(_TOWNS), rng.choice(_PRODUCTS)
    chair, engineer, auditor = _person(rng), _person(rng), _person(rng)
    year, budget, units = rng.randint(2009, 2031), rng.randint(120, 980), rng.randint(1200, 48000)
    growth, defects, staff = rng.randint(3, 41), round(rng.uniform(0.2, 6.5), 1), rng.randint(14, 260)
    delay, plant, target = rng.randint(2, 19), rng.randint(2, 9), rng.randint(50, 99)
    document = (
        f"The {town} cooperative closed its {year} financial year with sales of {units} {product}, "
        f"{growth} percent more than the year before. The board, chaired by {chair}, said that the "
        f"growth came almost entirely from the new plant on the river road, which opened {delay} weeks "
        f"late after a dispute over the cost of the foundations. The cooperative employs {staff} people, "
        f"most of them part time, and paid out a budget of {budget} thousand for wages and training.\n\n"
        f"The chief engineer, {engineer}, reported that the defect rate fell to {defects} percent in the "
        f"last quarter. She attributed the improvement to a second inspection line and to shorter shifts "
        f"on the assembly floor. \"We stopped asking people to work twelve hours and the mistakes went "
        f"away,\" she told the members at the annual meeting. Plant number {plant} will receive the same "
        f"inspection line in the spring, and the board expects the defect rate there to halve.\n\n"
        f"The external auditor, {auditor}, raised two concerns. First, the cooperative holds stock worth "
        f"more than three months of sales, which ties up cash that could pay down the loan for the new "
        f"plant. Second, the contracts with the two largest buyers end in the same month of {year + 1}, "
        f"so a single bad negotiation could remove half of the revenue at once. The auditor recommended "
        f"that the board stagger the renewals and publish a plan for the stock before the summer.\n\n"
        f"Members voted to keep the dividend unchanged and to set a target of {target} percent of orders "
        f"delivered on time by the end of next year. {chair} closed the meeting by thanking the staff and "
        f"promising a full report on the stock question at the next general assembly. A member from "
        f"{rng.choice(_TOWNS)} asked whether the {product} could be sold abroad; the board answered that "
        f"exports would be studied once the second plant runs at full capacity.")
    return chatml("Summarize the following report in a few paragraphs. Quote its key sentences "
                  f"verbatim, in quotation marks.\n\n{document}")


def free_prompt(rng: random.Random) -> str:
    """Free writing: the output is not in the prompt, so drafts mostly fail; what speculation
    costs when it cannot help."""
    name = rng.choice(_FIRST)
    return chatml(f"Write a long story about a {rng.choice(_CHARACTERS)} called {name}, who "
                  f"{rng.choice(_GOALS)} in {rng.choice(_PLACES)}. Include the number "
                  f"{rng.randint(100, 9999)} and a friend called {_person(rng)}.")


WORKLOADS: dict[str, Callable[[random.Random], str]] = {
    "edit": edit_prompt, "quote": quote_prompt, "free": free_prompt}


def prompt_for(workload: str, seed: int | str, run: int) -> str:
    """The prompt of one run: fresh for every (seed, run), the same again for the same ones, so
    that servers compared side by side can get the same prompts."""
    return WORKLOADS[workload](random.Random(f"{seed}:{workload}:{run}"))


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
