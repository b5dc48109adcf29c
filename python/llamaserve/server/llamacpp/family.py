"""llama-server's own API's declaration: /completion, /infill, /rerank, /props, /slots, /apply-template, /tools,
/cors-proxy, the
older /embeddings, /tokenize and /detokenize, its /v1-less paths of the OpenAI routes, errors in
llama-server's shape (an aliased OpenAI route's stream ends as under /v1), and its llamacpp:
series on /metrics. Like llama-server, one loaded model answers to any name."""
from __future__ import annotations

from typing import Any

from llamaserve.server.errors import ApiError
from llamaserve.server.family import ApiFamily
from llamaserve.server.llamacpp import api_router
from llamaserve.server.llamacpp.errors import llamacpp_body
from llamaserve.server.llamacpp.errors import stream_error as own_stream_error
from llamaserve.server.llamacpp.metrics import LlamaCppMetrics
from llamaserve.server.openai.family import FAMILY as OPENAI
from llamaserve.server.openai.family import stream_error as openai_stream_error
from llamaserve.server.prompt_pieces import blocks, text

ALIASES = api_router.OPENAI_ALIASES
PATHS = ("/tokenize", "/detokenize", "/completion", "/completions", "/infill", *api_router.RERANK_PATHS,
         "/embedding", "/embeddings", "/props", "/slots", "/apply-template", "/tools", "/cors-proxy", *ALIASES)


def _infill_pieces(body: dict[str, Any]) -> list[str]:
    """A FIM prompt's start: the other files, then the code before the cursor."""
    extra = body.get("input_extra")
    files = [text(c.get("text")) for c in extra if isinstance(c, dict)] if isinstance(extra, list) else []
    return blocks("".join(files) + text(body.get("input_prefix")))


def stream_error(path: str, error: ApiError) -> bytes:
    return openai_stream_error(ALIASES[path], error) if path in ALIASES else own_stream_error(path, error)


FAMILY = ApiFamily(
    "llamacpp", PATHS, api_router.routes, api_router.OPENAPI_PATHS, llamacpp_body, stream_error,
    {"/completion": OPENAI.prompt_pieces["/v1/completions"], "/completions": OPENAI.prompt_pieces["/v1/completions"],
     "/infill": _infill_pieces,
     **{alias: OPENAI.prompt_pieces[path] for alias, path in ALIASES.items() if path in OPENAI.prompt_pieces}},
    metrics=lambda: LlamaCppMetrics().render, loads_on_demand=True, lenient_names=True)
