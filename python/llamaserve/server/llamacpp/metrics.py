"""llama-server's /metrics series (llamacpp:...), so that its dashboards and alerts work unchanged.

They describe one model, as llama-server serves one: the server's model, or the one `?model=`
names (as llama-server's router mode asks). Unlabelled, with llama-server's exact names and types
(written out here: prometheus_client would append _total to its counter n_tokens_max). Every
figure is read from the engine's counters when scraped; the two throughput gauges are, as
llama-server's, averages since the previous scrape."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

from llamaserve.engine import Engine
from llamaserve.hosting.loaded import LoadedModel


@dataclass(frozen=True)
class _Throughput:
    """The counters the throughput gauges divide, as one scrape saw them."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generation_seconds: float = 0.0


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


class LlamaCppMetrics:
    """Renders the llamacpp: series of one loaded model, remembering each model's counters at
    the last scrape for the throughput gauges."""

    def __init__(self) -> None:
        self._last: weakref.WeakKeyDictionary[Engine, _Throughput] = weakref.WeakKeyDictionary()

    def render(self, model: LoadedModel) -> str:
        engine = model.engine
        decode, spec, cache = engine.decode_stats, engine.speculation_stats, engine.cache_stats
        now = _Throughput(decode["prompt_tokens"], decode["prompt_seconds"],
                          decode["generated_tokens"], decode["generation_seconds"])
        last = self._last.get(engine, _Throughput())
        self._last[engine] = now
        counters = (
            ("prompt_tokens_total", "Number of prompt tokens processed (not those served from a cache)",
             decode["prompt_tokens"]),
            ("prompt_tokens_cached_total", "Number of prompt tokens served from a cache", cache["cached_tokens"]),
            ("prompt_seconds_total", "Prompt process time in seconds", decode["prompt_seconds"]),
            ("tokens_predicted_total", "Number of generation tokens processed", decode["generated_tokens"]),
            ("tokens_predicted_seconds_total", "Predict process time in seconds", decode["generation_seconds"]),
            ("n_decode_total", "Total number of llama_decode() calls", decode["decodes"]),
            ("n_tokens_max", "Largest observed sequence length (prompt + generation)", decode["longest_sequence"]),
            ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", spec["drafted"]),
            ("spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target "
             "model", spec["accepted"]),
            ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps",
             decode["verify_steps"]),
        )
        gauges = (
            ("prompt_tokens_seconds", "Average prompt throughput in tokens/s (since the previous scrape)",
             _rate(now.prompt_tokens - last.prompt_tokens, now.prompt_seconds - last.prompt_seconds)),
            ("predicted_tokens_seconds", "Average generation throughput in tokens/s (since the previous scrape)",
             _rate(now.generated_tokens - last.generated_tokens, now.generation_seconds - last.generation_seconds)),
            ("requests_processing", "Number of requests processing", engine.busy_slots),
            ("requests_deferred", "Number of requests deferred", engine.queue_depth),
            ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
             decode["busy_slots"] / max(decode["decodes"], 1)),
        )
        lines = []
        for kind, items in (("counter", counters), ("gauge", gauges)):
            for name, description, value in items:
                lines += [f"# HELP llamacpp:{name} {description}", f"# TYPE llamacpp:{name} {kind}",
                          f"llamacpp:{name} {float(value)!r}"]
        return "\n".join(lines) + "\n"
