"""llama-server's `timings` object, which its clients read from every answer (and, with
timings_per_token, from every streamed chunk): prompt = up to the first token, predicted =
after it, from the engine's clock once a choice ended, from the stream's own while it runs."""
from __future__ import annotations

import time
from typing import Any

from llamaserve.server.chat.stream import Update


def timings(stats: dict[str, Any]) -> dict[str, Any]:
    """A finished choice's timings, from the engine's stats."""
    first, total = stats.get("time_to_first_token") or 0.0, stats.get("total_time") or 0.0
    prompt_n = max(0, stats.get("prompt_tokens", 0) - stats.get("cached_tokens", 0))
    return _timings(stats.get("cached_tokens", 0), prompt_n, first, stats.get("completion_tokens", 0),
                    max(0.0, total - first))


def prompt_timings(cache_n: int, prompt_n: int, prompt_s: float) -> dict[str, Any]:
    """While the prompt is processed: no token generated yet."""
    return _timings(cache_n, prompt_n, prompt_s, 0, 0.0)


def _timings(cache_n: int, prompt_n: int, prompt_s: float, predicted_n: int, predicted_s: float) -> dict[str, Any]:
    """`predicted_s`: the time after the first token, which came with the prompt's last batch: the
    generation rate is over the decode steps after it (predicted_n - 1), as llama-server's."""
    prompt_ms, predicted_ms = prompt_s * 1000, predicted_s * 1000
    steps = max(0, predicted_n - 1)
    return {"cache_n": cache_n, "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
            "prompt_per_second": prompt_n / prompt_s if prompt_s > 0 else 0.0,
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / steps if steps else 0.0,
            "predicted_per_second": steps / predicted_s if steps and predicted_s > 0 else 0.0}


class RunningTimings:
    """Each choice's timings while it streams (timings_per_token), from the stream's clock; the
    engine's own replace them when the choice ends."""

    def __init__(self, choices: int, prompt_tokens: int) -> None:
        self.started = time.monotonic()
        self.prompt_tokens = prompt_tokens
        self.first: list[float | None] = [None] * choices
        self.predicted = [0] * choices

    def after(self, update: Update) -> dict[str, Any]:
        """The timings to send with this update."""
        if update.stats is not None:
            return timings(update.stats)
        now, i = time.monotonic(), update.choice
        if self.first[i] is None:
            self.first[i] = now
        self.predicted[i] += update.tokens
        first = self.first[i]
        return _timings(0, self.prompt_tokens, first - self.started, self.predicted[i], now - first)
