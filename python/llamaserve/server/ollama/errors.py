"""Errors under /api in Ollama's shape: {"error": "..."}, with the HTTP status kept (the ollama
client raises ResponseError carrying both)."""
from __future__ import annotations

from typing import Any

from llamaserve.server.errors import ApiError


def ollama_body(error: ApiError) -> dict[str, Any]:
    message = error.message if not error.details else f"{error.message} ({error.details})"
    return {"error": message}
