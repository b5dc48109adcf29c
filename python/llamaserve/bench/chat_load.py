"""`llamaserve bench chat`: multi-turn conversations that share one long system prompt (an
agent's or a RAG preamble), sent exactly as the OpenAI SDK sends them: every turn resends the
whole history, streamed, with no server-specific field. What it measures is what prefix
caching is for: time to first token of the first turn (the shared prompt) and of the later
turns (the conversation so far), and the aggregate output rate."""
from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from llamaserve.bench.openai_turn import LoadResult, stream_turn

TOPICS = ("a late delivery", "a broken kettle", "a refund for shoes", "a lost password",
          "a gift card balance", "a change of address", "an invoice copy", "a damaged parcel",
          "a warranty claim", "a price match", "a cancelled order", "a missing item",
          "a subscription pause", "a loyalty discount", "a size exchange", "a store's hours")
FOLLOW_UPS = ("Can you explain that in more detail?", "What should I do next?",
              "How long will that take?", "Is there anything else I should know?")


def system_prompt(words: int = 1100) -> str:
    """A deterministic support-agent preamble of about 1,500 tokens."""
    rules = []
    i = 0
    while sum(len(r.split()) for r in rules) < words:
        rules.append(f"Policy {i + 1}: when a customer asks about case type {i % 37}, check the order "
                     f"history, confirm the delivery address, apologise once, and offer option {i % 5 + 1} "
                     f"before escalating to a human agent.")
        i += 1
    return "You are the customer support agent of an online shop. Follow these policies.\n" + "\n".join(rules)


@dataclass
class ChatSpec:
    url: str  # server root; the OpenAI client talks to <url>/v1
    model: str = "default"
    clients: int = 8
    turns: int = 4
    max_tokens: int = 32
    system_words: int = 1100
    banned_tokens: tuple[int, ...] = ()  # end-of-sequence ids, banned (logit_bias) so lengths are equal
    api_key: str | None = None
    timeout: float = 600.0


@dataclass
class TurnResult:
    client: int
    turn: int  # 1-based
    ttft: float
    tokens: int
    prompt_tokens: int
    cached_tokens: int | None  # as the server reports it (prompt_tokens_details), if it does
    error: str = ""


@dataclass
class ChatResult(LoadResult):
    clients: int
    turns: int
    wall_s: float
    output_tok_s: float
    ttft_turn1_p50_s: float
    ttft_later_p50_s: float
    errors: int
    cached_fraction: float  # of all prompt tokens, where the server reports cached_tokens
    first_error: str = ""
    results: list[TurnResult] = field(default_factory=list)


async def _conversation(client, spec: ChatSpec, index: int, system: str) -> list[TurnResult]:  # noqa: ANN001
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": f"Hello, I need help with {TOPICS[index % len(TOPICS)]}."}]
    out: list[TurnResult] = []
    for turn in range(1, spec.turns + 1):
        t = await stream_turn(client, spec.model, messages, spec.max_tokens, spec.banned_tokens)
        out.append(TurnResult(index, turn, t.ttft, t.tokens, t.prompt_tokens, t.cached_tokens, t.error))
        messages.append({"role": "assistant", "content": t.text})
        messages.append({"role": "user", "content": FOLLOW_UPS[(turn - 1) % len(FOLLOW_UPS)]})
    return out


async def _run(spec: ChatSpec) -> ChatResult:
    from openai import AsyncOpenAI

    system = system_prompt(spec.system_words)
    async with AsyncOpenAI(base_url=spec.url.rstrip("/") + "/v1", api_key=spec.api_key or "unused",
                           timeout=spec.timeout, max_retries=0) as client:
        started = time.perf_counter()
        per_client = await asyncio.gather(*(_conversation(client, spec, i, system) for i in range(spec.clients)))
        wall = time.perf_counter() - started
    results = [r for rs in per_client for r in rs]
    good = [r for r in results if not r.error]
    failed = [r for r in results if r.error]

    def p50(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    later = [r for r in good if r.turn > 1]
    reported = [r for r in good if r.cached_tokens is not None]
    return ChatResult(
        clients=spec.clients, turns=spec.turns, wall_s=wall,
        output_tok_s=sum(r.tokens for r in good) / wall if wall > 0 else 0.0,
        ttft_turn1_p50_s=p50([r.ttft for r in good if r.turn == 1]),
        ttft_later_p50_s=p50([r.ttft for r in later]),
        errors=len(failed), cached_fraction=float("nan") if not reported else
        sum(r.cached_tokens or 0 for r in reported) / max(1, sum(r.prompt_tokens for r in reported)),
        first_error=failed[0].error if failed else "", results=results)


def run(spec: ChatSpec) -> ChatResult:
    return asyncio.run(_run(spec))
