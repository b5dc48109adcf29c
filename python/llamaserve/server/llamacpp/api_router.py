"""The routes of llama-server's /tokenize and /detokenize."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llamaserve.hosting.host import ModelHost
from llamaserve.server import openapi
from llamaserve.server.body import read_json
from llamaserve.server.llamacpp import protocol


def routes(host: ModelHost) -> list[Route]:
    async def tokenize(request: Request) -> JSONResponse:
        req = protocol.parse_tokenize(await read_json(request))
        model = host.acquire(req.model)
        try:  # a thread: a long text must not stall the streams
            tokens = await asyncio.to_thread(model.engine.tokenize, req.content, add_special=req.add_special,
                                             parse_special=req.parse_special)
            if not req.with_pieces:
                return JSONResponse({"tokens": tokens})
            pieces = [{"id": t, "piece": protocol.piece(model.engine.token_bytes(t))} for t in tokens]
            return JSONResponse({"tokens": pieces})
        finally:
            host.release(model)

    async def detokenize(request: Request) -> JSONResponse:
        req = protocol.parse_detokenize(await read_json(request))
        model = host.acquire(req.model)
        try:
            protocol.check_vocabulary(req.tokens, int(model.engine.metadata["n_vocab"]))
            return JSONResponse({"content": await asyncio.to_thread(model.engine.detokenize, req.tokens)})
        finally:
            host.release(model)

    return [Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"])]


_TAG = "llama-server endpoints"
OPENAPI_PATHS = {
    "/tokenize": {"post": openapi.operation(
        "Text to token ids (with_pieces: each with its text)", _TAG,
        openapi.responses({200: {"type": "object", "required": ["tokens"],
                                 "properties": {"tokens": {"type": "array"}}}}, (*openapi.COMMON_ERRORS, 404)),
        protocol.TOKENIZE_SCHEMA)},
    "/detokenize": {"post": openapi.operation(
        "Token ids to text", _TAG,
        openapi.responses({200: {"type": "object", "required": ["content"],
                                 "properties": {"content": {"type": "string"}}}}, (*openapi.COMMON_ERRORS, 404)),
        protocol.DETOKENIZE_SCHEMA)},
}
