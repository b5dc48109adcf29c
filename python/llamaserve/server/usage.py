"""Token counts of a response, in the one shape both APIs (and OpenAI's) report them."""
from __future__ import annotations


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, object]:
    """cached_tokens: prompt tokens served from the prefix cache (OpenAI's field)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}
