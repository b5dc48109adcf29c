"""Reranking: a query and each document framed as one sequence, as llama-server frames the pair
(the GGUF's "rerank" prompt with {query} and {document} when it has one, else
[BOS] query [EOS] [SEP] document [EOS] with the specials the vocabulary adds), scored by the
model's pooled output, and the documents ordered best first."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llamaserve.errors import InvalidRequest
from llamaserve.generation_params import check_text
from llamaserve.results import Ranked, Reranking

if TYPE_CHECKING:
    import numpy

Tokenize = Callable[[str, bool, bool], list[int]]  # (text, add_special, parse_special) -> ids
_PLACEHOLDER = re.compile(r"\{(query|document)\}")


def check_documents(name: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidRequest(f"{name}: must be a non-empty list of strings")
    return [check_text(f"{name}[{i}]", document) for i, document in enumerate(value)]


def pair_tokens(tokenize: Tokenize, metadata: Mapping[str, Any], query: str, document: str) -> list[int]:
    """The token ids of one (query, document) pair."""
    template = metadata["rerank_template"]
    if template is not None:
        # One pass, so that a {document} inside the query stays the query's text.
        text = _PLACEHOLDER.sub(lambda m: query if m.group(1) == "query" else document, template)
        return tokenize(text, False, True)
    end = metadata["eos_token_id"] if metadata["eos_token_id"] >= 0 else metadata["sep_token_id"]
    closing = [end] if metadata["add_eos"] and end >= 0 else []
    tokens = [metadata["bos_token_id"]] if metadata["add_bos"] and metadata["bos_token_id"] >= 0 else []
    tokens += [*tokenize(query, False, False), *closing]
    if metadata["add_sep"] and metadata["sep_token_id"] >= 0:
        tokens.append(metadata["sep_token_id"])
    return [*tokens, *tokenize(document, False, False), *closing]


def ranked(scores: numpy.ndarray, token_counts: list[int], top_n: int | None) -> Reranking:
    """Each document's score (its first pooled value, as llama-server reads it), best first
    (ties in the documents' order), the top_n of them."""
    order = sorted(range(len(token_counts)), key=lambda i: -float(scores[i, 0]))
    results = [Ranked(i, float(scores[i, 0])) for i in order]
    return Reranking(results[:top_n] if top_n is not None else results, sum(token_counts))
