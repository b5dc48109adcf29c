"""The routes of llama-server's /tokenize and /detokenize."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llamaserve.hosting.host import ModelHost
from llamaserve.server import openapi
from llamaserve.server.body import read_json
from llamaserve.server.llamacpp import protocol
from llamaserve.server.offloop import json_response


def routes(host: ModelHost) -> list[Route]:
    async def tokenize(request: Request) -> Response:
        req = protocol.parse_tokenize(await read_json(request))
        model = host.acquire(req.model)
        try:  # a long text, and its answer, must not stall the streams
            return await json_response(protocol.tokenize_answer, model.engine, req)
        finally:
            host.release(model)

    async def detokenize(request: Request) -> Response:
        # Checking a long list of ids takes a while too: off the loop as well.
        req = await asyncio.to_thread(protocol.parse_detokenize, await read_json(request))
        model = host.acquire(req.model)
        try:
            return await json_response(protocol.detokenize_answer, model.engine, req)
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
