"""Token counts of a response, in the one shape both APIs (and OpenAI's) report them."""
from __future__ import annotations


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
