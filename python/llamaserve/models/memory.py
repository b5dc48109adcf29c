"""What a model costs in memory before it is loaded, and sizes as people write them."""
from __future__ import annotations

import re
from dataclasses import dataclass

from llamaserve.models.gguf import GGUFInfo, count_value
from llamaserve.native import MAX_STEP_DRAFTS


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "compute": self.compute,
                "total": self.total}


def estimate_memory(info: GGUFInfo, n_ctx: int, n_parallel: int, n_batch: int = 512) -> MemoryEstimate:
    """What loading costs: the weights, an F16 KV cache of n_ctx tokens for each of the
    n_parallel slots (the engine gives every slot its whole window), and llama.cpp's compute
    buffers (activations of a full ubatch, plus one row of logits per slot and per token a
    step may draft: the engine reserves no more outputs than that)."""
    n_ubatch = min(n_batch, 512)
    cells = -(-n_ctx // 256) * 256  # llama.cpp rounds each slot's cache up to 256 cells
    kv = info.kv_bytes_per_token() * cells * n_parallel
    n_embd = info.count("embedding_length")
    ff = info.arch_key("feed_forward_length")
    n_ff = max(map(count_value, ff), default=0) if isinstance(ff, list) else count_value(ff)
    compute = 4 * n_ubatch * (4 * n_embd + 3 * n_ff) + 4 * (n_parallel + MAX_STEP_DRAFTS) * info.n_vocab
    return MemoryEstimate(info.weights_size, kv, compute)


def parse_size(text: str | int | float) -> int:
    """Bytes from "8GB", "512MiB", "1.5G", "100000" (decimal and binary units both 1024-based
    for G/M/K, as memory is)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a size must not be negative")
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read {str(text)[:32]!r} as a size (like 8GB or 512MB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit)) if unit else int(number)


def gigabytes(n_bytes: float) -> str:
    """The spec's size format: "4.2GB"."""
    return f"{n_bytes / 2**30:.1f}GB"


def format_size(n_bytes: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f}{unit}"
    return f"{int(n_bytes)}B"
