"""Token id -> its bytes and text, cached per model (log-probabilities name tokens; Anthropic's
stop_sequence is found in the tokens' text)."""
from __future__ import annotations

import weakref
from typing import Any

from llamaserve.hosting.loaded import LoadedModel


class TokenText:
    """Token id -> its bytes and text (cached; invalid UTF-8 pieces written as \\x escapes)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.cache: dict[int, tuple[bytes, str]] = {}

    def __call__(self, token: int) -> tuple[bytes, str]:
        hit = self.cache.get(token)
        if hit is None:
            raw = self.engine.token_bytes(token)
            hit = self.cache[token] = (raw, raw.decode("utf-8", errors="backslashreplace"))
        return hit


_TEXTS: weakref.WeakKeyDictionary[LoadedModel, TokenText] = weakref.WeakKeyDictionary()


def token_text(model: LoadedModel) -> TokenText:
    text = _TEXTS.get(model)
    if text is None:
        text = _TEXTS[model] = TokenText(model.engine)
    return text
