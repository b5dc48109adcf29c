"""What a generation, an embedding and a reranking call return: the result types of llamaserve.Engine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy

# (token id, log-probability, [(alternative id, log-probability), ...])
TokenLogprob = tuple[int, float, list[tuple[int, float]]]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (reused ones too)
    drafted_tokens: int = 0  # speculation: tokens verified beside the sampled ones
    accepted_tokens: int = 0  # of which the model chose (they are in the completion)
    reasoning_tokens: int = 0  # of the completion, those of a reasoning model's thinking
    reused_tokens: int = 0  # of cached_tokens, those reused past a divergence (moved)
    # The first prompt token where the prompt left the cached sequence it shared most with,
    # and the prompt's text from there (None: it never left one).
    cache_departure: int | None = None
    cache_departure_text: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str  # stop | length | cancelled | error
    latency: float  # seconds from submit to the last token
    time_to_first_token: float | None


@dataclass(frozen=True)
class Embeddings:
    vectors: numpy.ndarray  # float32, one L2-normalized row per input
    token_counts: list[int]  # tokens of each input


@dataclass(frozen=True)
class Ranked:
    index: int  # the document's place in the request
    score: float  # the reranker's relevance score (higher: more relevant)


@dataclass(frozen=True)
class Reranking:
    results: list[Ranked]  # best first
    prompt_tokens: int  # of every (query, document) pair together


def completion_of(text: str, stats: dict[str, Any]) -> Completion:
    """A finished stream's text and native stats as a Completion."""
    return Completion(
        text=text,
        usage=Usage(stats["prompt_tokens"], stats["completion_tokens"], stats["cached_tokens"],
                    stats["drafted_tokens"], stats["accepted_tokens"], stats["reasoning_tokens"],
                    stats["reused_tokens"], stats["cache_departure"], stats["cache_departure_text"]),
        finish_reason=stats["finish_reason"],
        latency=stats["total_time"],
        time_to_first_token=stats["time_to_first_token"],
    )


@dataclass(frozen=True)
class SlotFile:
    """A slot file written or read (Engine.save_slot, restore_slot)."""
    tokens: int  # the cached prompt's tokens
    bytes: int  # its KV state's size
    ms: float  # the time it took on the scheduler
