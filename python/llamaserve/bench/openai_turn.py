"""One streamed chat turn as the OpenAI SDK sends it, timed, with the usage the server reports:
what the multi-turn loads (bench chat, bench agent) measure each turn by."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any


class LoadResult:
    """A load's result dataclass: as_dict() is its summary, without the per-turn `results`."""

    def as_dict(self) -> dict:
        out = asdict(self)  # type: ignore[call-overload]
        out.pop("results")
        return out


@dataclass
class StreamedTurn:
    ttft: float  # seconds to the first content; nan if none came
    text: str
    tokens: int  # completion tokens, as the server reports them
    prompt_tokens: int
    cached_tokens: int | None  # prompt_tokens_details.cached_tokens, if the server reports it
    reused_tokens: int | None  # llamaserve's prompt_tokens_details.reused_tokens, if reported
    cache_miss: dict[str, Any] | None  # llamaserve's usage.cache_miss, if reported
    error: str = ""


async def stream_turn(client: Any, model: str, messages: list[dict[str, str]], max_tokens: int,
                      banned_tokens: tuple[int, ...]) -> StreamedTurn:
    """Streams one greedy turn (end tokens banned so every turn has max_tokens tokens)."""
    started = time.perf_counter()
    ttft, text, tokens, prompt_tokens, cached, reused, miss, error = None, [], 0, 0, None, None, None, ""
    try:
        stream = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0,
            stream=True, stream_options={"include_usage": True},
            logit_bias={str(t): -100 for t in banned_tokens} or None)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - started
                text.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                tokens, prompt_tokens = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
                details = chunk.usage.prompt_tokens_details
                cached = details.cached_tokens if details is not None else None
                reused = (details.model_extra or {}).get("reused_tokens") if details is not None else None
                miss = (chunk.usage.model_extra or {}).get("cache_miss")
    except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure and goes on
        error = f"{type(exc).__name__}: {exc}"
    return StreamedTurn(ttft if ttft is not None else float("nan"), "".join(text), tokens, prompt_tokens,
                        cached, reused, miss, error or ("" if text else "no content received"))
