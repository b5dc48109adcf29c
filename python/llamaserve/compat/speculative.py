"""llama-cpp-python's LlamaPromptLookupDecoding: n-gram speculation, which the engine runs
natively (Llama(draft_model=LlamaPromptLookupDecoding(num_pred_tokens=n)) drafts n tokens)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaPromptLookupDecoding:
    max_ngram_size: int = 2
    num_pred_tokens: int = 10
