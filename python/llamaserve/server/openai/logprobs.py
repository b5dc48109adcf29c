"""Token log-probabilities in OpenAI's two shapes (chat and completions), never -inf."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from llamaserve.results import TokenLogprob
from llamaserve.server.chat.token_text import TokenText

LOGPROB_FLOOR = -9999.0  # what OpenAI reports for a probability of (about) zero; never -inf

def _finite(value: float) -> float:
    return value if math.isfinite(value) else LOGPROB_FLOOR


def chat_logprobs(records: Sequence[TokenLogprob], text_of: TokenText, top: int) -> list[dict[str, Any]]:
    """OpenAI chat shape: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]."""
    out = []
    for token, logprob, alternatives in records:
        raw, text = text_of(token)
        entries = []
        for alt, alt_logprob in alternatives[:top]:
            alt_raw, alt_text = text_of(alt)
            entries.append({"token": alt_text, "logprob": _finite(alt_logprob), "bytes": list(alt_raw)})
        out.append({"token": text, "logprob": _finite(logprob), "bytes": list(raw), "top_logprobs": entries})
    return out


def completion_logprobs(records: Sequence[TokenLogprob], text_of: TokenText, top: int,
                        offset: int = 0) -> dict[str, Any]:
    """OpenAI completions shape: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens, logprobs, tops, offsets = [], [], [], []
    for token, logprob, alternatives in records:
        _, text = text_of(token)
        tokens.append(text)
        logprobs.append(_finite(logprob))
        tops.append({text_of(alt)[1]: _finite(lp) for alt, lp in alternatives[:top]} if top else None)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}
