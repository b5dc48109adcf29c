"""Embeddings for every API: the inputs a request may send (a text, texts, or token-id
lists), and the work itself, off the event loop under a model lease."""
from __future__ import annotations

import asyncio
from typing import Any

from llamaserve.generation_params import INT32_MAX, check_prompts
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.results import Embeddings
from llamaserve.server.errors import invalid
from llamaserve.server.generation import GenerationService

MAX_INPUTS = 2048  # OpenAI's limit per request
_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": INT32_MAX}}
INPUT_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "string", "minLength": 1},
    {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": {"type": "string", "minLength": 1}},
    _TOKENS, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": _TOKENS}]}


def parse_inputs(value: Any) -> list[str | list[int]]:
    return check_prompts("input", value, MAX_INPUTS)


async def embed(service: GenerationService, model_name: str | None, inputs: list[str | list[int]],
                dimensions: int | None = None) -> tuple[LoadedModel, Embeddings]:
    async with service.lease(model_name) as model:
        if dimensions is not None and dimensions != model.engine.n_embd:
            raise invalid(f"dimensions: this model's embeddings have {model.engine.n_embd} dimensions, "
                          f"and shortening them is not supported")
        # A thread: embedding a batch takes a while, and the streams go on meanwhile.
        return model, await asyncio.to_thread(model.engine.embeddings, inputs)
