"""Token counts of a response, in the one shape both APIs (and OpenAI's) report them."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
          drafts: tuple[int, int] = (0, 0), reasoning_tokens: int = 0,
          cache: CacheReport | None = None) -> dict[str, object]:
    """cached_tokens: prompt tokens served from the prefix cache; drafts: (drafted, accepted)
    tokens of speculative decoding, in OpenAI's predicted-output fields (the accepted ones
    are in the completion, the rejected ones were verified and dropped); reasoning_tokens:
    the completion's tokens of thinking; cache: why the cache served what it did (our own
    fields beside OpenAI's: prompt_tokens_details.reused_tokens and cache_miss)."""
    drafted, accepted = drafts
    out: dict[str, object] = {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens,
                                      "accepted_prediction_tokens": accepted,
                                      "rejected_prediction_tokens": drafted - accepted}}
    if cache is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "reused_tokens": cache.reused_tokens}
        if cache.miss_at is not None:
            out["cache_miss"] = {"token": cache.miss_at, "text": cache.miss_text}
    return out


@dataclass(frozen=True)
class CacheReport:
    """Of a prompt's cached tokens, those reused past a divergence (moved to new positions),
    and where the prompt left the cached sequence it shared most with: the first token that
    differed and the prompt's text from there (None: it never left one, e.g. the next turn of
    a conversation that resends its history unchanged)."""
    reused_tokens: int = 0
    miss_at: int | None = None
    miss_text: str = ""

    @classmethod
    def of(cls, stats: Iterable[Mapping[str, Any]]) -> CacheReport:
        """The report of one prompt's outputs (their native stats): they share the prompt, so
        the first one's departure is every one's."""
        stats = list(stats)
        left = next((s for s in stats if s.get("cache_departure") is not None), None)
        return cls(max((s.get("reused_tokens", 0) for s in stats), default=0),
                   None if left is None else left["cache_departure"],
                   "" if left is None else left.get("cache_departure_text", ""))


def drafts(stats: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(drafted, accepted) tokens of these outputs' native stats, summed."""
    drafted = accepted = 0
    for s in stats:
        drafted += s.get("drafted_tokens", 0)
        accepted += s.get("accepted_tokens", 0)
    return drafted, accepted
