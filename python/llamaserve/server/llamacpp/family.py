"""llama-server's own endpoints' declaration: /tokenize and /detokenize, with the spec's
error JSON (they stream nothing), and its llamacpp: series on /metrics."""
from __future__ import annotations

from llamaserve.server.family import ApiFamily, spec_error_body, spec_stream_error
from llamaserve.server.llamacpp import api_router
from llamaserve.server.llamacpp.metrics import LlamaCppMetrics

FAMILY = ApiFamily("llamacpp", ("/tokenize", "/detokenize"), lambda service: api_router.routes(service.host),
                   api_router.OPENAPI_PATHS, spec_error_body, spec_stream_error,
                   metrics=lambda: LlamaCppMetrics().render)
