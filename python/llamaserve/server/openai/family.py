"""The OpenAI-compatible API's declaration: /v1 (but /v1/messages, Anthropic's), OpenAI's
error shape, and its error events: a Responses stream's is typed, the others' a data line."""
from __future__ import annotations

from typing import Any

from llamaserve.server import sse
from llamaserve.server.errors import ApiError
from llamaserve.server.family import ApiFamily
from llamaserve.server.openai import api_router
from llamaserve.server.openai.errors import openai_body
from llamaserve.server.prompt_pieces import blocks, messages, text


def stream_error(path: str, error: ApiError) -> bytes:
    if path == "/v1/responses":
        body = openai_body(error)["error"]
        return b"event: error\n" + sse.event({"type": "error", "code": body["code"], "message": body["message"],
                                              "param": body["param"]})
    return sse.event(openai_body(error))


def _responses_pieces(body: dict[str, Any]) -> list[str]:
    items = body.get("input")
    turns = blocks(items) if isinstance(items, str) else messages(items)
    return [text(body.get("instructions")) + "\x1d", *turns]


FAMILY = ApiFamily(
    "openai", ("/v1",), api_router.routes, api_router.OPENAPI_PATHS, openai_body, stream_error,
    {"/v1/chat/completions": lambda body: messages(body.get("messages")),
     "/v1/responses": _responses_pieces,
     "/v1/completions": lambda body: blocks(body.get("prompt"))},
    loads_on_demand=True, lenient_names=True)
