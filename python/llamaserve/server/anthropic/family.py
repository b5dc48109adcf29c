"""The Anthropic Messages API's declaration: /v1/messages, Anthropic's error shape and
error event."""
from __future__ import annotations

from llamaserve.server.anthropic import api_router
from llamaserve.server.anthropic.errors import anthropic_body
from llamaserve.server.anthropic.protocol import event
from llamaserve.server.errors import ApiError
from llamaserve.server.family import ApiFamily
from llamaserve.server.prompt_pieces import messages, text


def stream_error(path: str, error: ApiError) -> bytes:
    return event("error", anthropic_body(error))


FAMILY = ApiFamily(
    "anthropic", ("/v1/messages",), api_router.routes, api_router.OPENAPI_PATHS, anthropic_body, stream_error,
    # The system prompt comes apart from the turns.
    {"/v1/messages": lambda body: [text(body.get("system")) + "\x1d", *messages(body.get("messages"))]},
    loads_on_demand=True, lenient_names=True)
