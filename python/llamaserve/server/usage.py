"""Token counts of a response, in the one shape both APIs (and OpenAI's) report them."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
          drafts: tuple[int, int] = (0, 0), reasoning_tokens: int = 0) -> dict[str, object]:
    """cached_tokens: prompt tokens served from the prefix cache; drafts: (drafted, accepted)
    tokens of speculative decoding, in OpenAI's predicted-output fields (the accepted ones
    are in the completion, the rejected ones were verified and dropped); reasoning_tokens:
    the completion's tokens of thinking."""
    drafted, accepted = drafts
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens,
                                          "accepted_prediction_tokens": accepted,
                                          "rejected_prediction_tokens": drafted - accepted}}


def drafts(stats: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(drafted, accepted) tokens of these outputs' native stats, summed."""
    drafted = accepted = 0
    for s in stats:
        drafted += s.get("drafted_tokens", 0)
        accepted += s.get("accepted_tokens", 0)
    return drafted, accepted
