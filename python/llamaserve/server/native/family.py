"""The native API's declaration (the spec): /api/v1, the spec's error JSON and error event."""
from __future__ import annotations

from typing import Any

from llamaserve.server.family import ApiFamily, spec_error_body, spec_stream_error
from llamaserve.server.native import api_router
from llamaserve.server.prompt_pieces import blocks


def _prompt(body: dict[str, Any]) -> list[str]:
    return blocks(body.get("prompt"))


FAMILY = ApiFamily("native", ("/api/v1",), api_router.routes, api_router.OPENAPI_PATHS, spec_error_body,
                   spec_stream_error, {"/api/v1/generate": _prompt, "/api/v1/generate/stream": _prompt})
