"""The embeddings request and response of the OpenAI-compatible /v1 API."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llamaserve.generation_params import INT32_MAX, check_integer
from llamaserve.server.errors import invalid
from llamaserve.server.embeddings import INPUT_SCHEMA, parse_inputs
from llamaserve.server.offloop import dumps, write_list, write_object
from llamaserve.server.openai.protocol import MAX_NAME, json_object, model_name, present

if TYPE_CHECKING:
    import numpy

EMBEDDING_PARAMETERS = frozenset({"model", "input", "encoding_format", "dimensions"})
EMBEDDINGS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["input"], "additionalProperties": False,
    "properties": {
        "input": INPUT_SCHEMA,
        "model": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "user": {"type": "string"}}}


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str | None
    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    values = present(json_object("body", body), EMBEDDING_PARAMETERS)
    if "input" not in values:
        raise invalid("input: required")
    encoding = values.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("encoding_format: must be float or base64")
    dimensions = check_integer("dimensions", values["dimensions"], 1, INT32_MAX) if "dimensions" in values else None
    return EmbeddingsRequest(model_name(values), parse_inputs(values["input"]), encoding, dimensions)


def _encoded(row: numpy.ndarray, encoding: str) -> str:
    if encoding == "base64":  # what the SDK asks for by default: little-endian float32 bytes
        return dumps(base64.b64encode(row.astype("<f4").tobytes()).decode("ascii"))
    return dumps(row.tolist())


def embeddings_answer(vectors: numpy.ndarray, token_counts: list[int], model: str, encoding: str) -> str:
    """The answer's JSON, a row at a time (see server/offloop.py: 2,048 rows are a lot)."""
    tokens = sum(token_counts)
    data = write_list(write_object({"object": '"embedding"', "index": str(i), "embedding": _encoded(row, encoding)})
                     for i, row in enumerate(vectors))
    return write_object({"object": '"list"', "model": dumps(model), "data": data,
                        "usage": dumps({"prompt_tokens": tokens, "total_tokens": tokens})})
