"""llama-server's /rerank request and answer, in its two shapes: Jina's and Cohere's (`documents`:
{"model", "object": "list", "usage", "results": [{"index", "relevance_score", "document"?}]})
and Hugging Face TEI's (`texts`: a plain list of {"index", "score", "text"?}); results best first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamaserve.engine.rerank import check_documents
from llamaserve.generation_params import INT32_MAX, check_bool, check_integer, check_text
from llamaserve.results import Reranking
from llamaserve.server.errors import invalid
from llamaserve.server.llamacpp.protocol import MODEL_SCHEMA
from llamaserve.server.protocol_values import json_object, model_name

_DOCUMENTS = {"type": "array", "minItems": 1, "items": {"type": "string"}}
RERANK_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["query"], "additionalProperties": False,
    "oneOf": [{"required": ["documents"]}, {"required": ["texts"]}],
    "properties": {
        "query": {"type": "string", "description": "what the documents are ranked by"},
        "documents": {**_DOCUMENTS, "description": "the documents to rank (Jina's and Cohere's shape)"},
        "texts": {**_DOCUMENTS, "description": "the documents to rank (TEI's shape: the answer is a plain list)"},
        "top_n": {"type": "integer", "minimum": 1, "maximum": INT32_MAX,
                  "description": "the most results to return (default: all)"},
        "return_documents": {"type": "boolean", "description": "each result with its document's text"},
        "return_text": {"type": "boolean", "description": "the same as return_documents (TEI's name)"},
        "model": MODEL_SCHEMA}}


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    tei: bool  # the documents came as `texts`: answer in TEI's shape
    top_n: int | None
    return_documents: bool
    model: str | None


def parse(body: Any) -> RerankRequest:
    values = {k: v for k, v in json_object("body", body).items() if v is not None}
    for name in values:
        if name not in RERANK_SCHEMA["properties"]:
            raise invalid(f"{str(name)[:64]}: unsupported parameter")
    if "query" not in values:
        raise invalid("query: required")
    if "documents" in values and "texts" in values:
        raise invalid("texts: send the documents as documents or as texts, not both")
    tei = "texts" in values
    field = "texts" if tei else "documents"
    if field not in values:
        raise invalid("documents: required, a non-empty list of strings")
    top_n = check_integer("top_n", values["top_n"], 1, INT32_MAX) if "top_n" in values else None
    return_documents = any([check_bool(flag, values.get(flag, False)) for flag in ("return_documents", "return_text")])
    return RerankRequest(check_text("query", values["query"]), check_documents(field, values[field]), tei, top_n,
                         return_documents, model_name(values))


def answer(req: RerankRequest, served_name: str, ranking: Reranking) -> Any:
    if req.tei:
        return [{"index": r.index, "score": r.score,
                 **({"text": req.documents[r.index]} if req.return_documents else {})} for r in ranking.results]
    return {"model": served_name, "object": "list",
            "usage": {"prompt_tokens": ranking.prompt_tokens, "total_tokens": ranking.prompt_tokens},
            "results": [{"index": r.index, "relevance_score": r.score,
                         **({"document": {"text": req.documents[r.index]}} if req.return_documents else {})}
                        for r in ranking.results]}
