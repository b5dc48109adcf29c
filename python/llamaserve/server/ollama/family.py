"""Ollama's API's declaration: its routes under /api (the native API keeps /api/v1), Ollama's
error shape {"error": "..."} and the same as one NDJSON record ending a stream."""
from __future__ import annotations

from llamaserve.server.errors import ApiError
from llamaserve.server.family import ApiFamily
from llamaserve.server.ollama import api_router
from llamaserve.server.ollama.errors import ollama_body
from llamaserve.server.ollama.serving import line
from llamaserve.server.prompt_pieces import blocks, messages, text


def stream_error(path: str, error: ApiError) -> bytes:
    return line(ollama_body(error))


# Ollama's routes one by one: the rest of /api (an unknown /api/v2...) stays the spec's.
PATHS = tuple(f"/api/{name}" for name in ("chat", "generate", "embed", "embeddings", "tags", "ps", "show", "version",
                                          "pull", "push", "create", "copy", "delete"))

FAMILY = ApiFamily(
    "ollama", PATHS, api_router.routes, api_router.OPENAPI_PATHS, ollama_body, stream_error,
    {"/api/chat": lambda body: messages(body.get("messages")),
     "/api/generate": lambda body: [text(body.get("system")) + "\x1d", *blocks(body.get("prompt"))]},
    loads_on_demand=True)  # Ollama's own names are strict: an unknown one is a 404
