"""The routes of the native API under /api/v1."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import openapi
from llamaserve.server.body import read_json
from llamaserve.server.embeddings import embed
from llamaserve.server.errors import DOMAIN_ERRORS
from llamaserve.server.generation import GenerationService
from llamaserve.server.native import protocol
from llamaserve.server.native.catalog import catalog, model_info
from llamaserve.server.native.serving import NativeService
from llamaserve.server.roles import require_admin
from llamaserve.server.offloop import json_response
from llamaserve.server.sse import until_disconnect


def routes(generations: GenerationService) -> list[Route]:
    service = NativeService(generations)
    host, config = generations.host, generations.config

    async def parsed(request: Request) -> protocol.GenerateRequest:
        body = protocol.parse_generate(await read_json(request))
        async with generations.lease(body.model) as model:  # --auto-load
            return replace(body, prompt=await generations.tokenized(model, body.prompt),
                           generation=await model.engine.aprepare(body.generation))

    async def generate(request: Request) -> Response:
        body = await parsed(request)
        if body.stream:
            return service.open_stream(body)
        return JSONResponse(await until_disconnect(service.complete(body), request.receive))

    async def generate_stream(request: Request) -> Response:
        body = await parsed(request)
        return service.open_stream(body)

    async def batch_generate(request: Request) -> JSONResponse:
        items = protocol.parse_batch(await read_json(request), config.max_batch_size)
        for name in dict.fromkeys(i.get("model") for i in items if isinstance(i, dict)):
            if name is None or isinstance(name, str):
                with contextlib.suppress(*DOMAIN_ERRORS):  # the items report their own errors
                    await host.ensure(name)  # a file dropped in since is found (the spec: no load)
        return JSONResponse({"results": await until_disconnect(service.batch(items), request.receive)})

    async def embeddings(request: Request) -> Response:
        req = protocol.parse_embeddings(await read_json(request))
        model, result = await embed(generations, req.model, req.inputs)
        return await json_response(protocol.embeddings_answer, result, model.name)

    async def list_models(request: Request) -> JSONResponse:
        # A thread: the listing rescans the models folder (new files, changed headers).
        return JSONResponse({"models": await asyncio.to_thread(catalog, host)})

    async def load_model(request: Request) -> JSONResponse:
        """200 with the model once loaded; 202 with the progress when the load (quantizing
        first, if asked to) outlasts --load-wait; it goes on, and the listing shows it."""
        require_admin(request.scope, "loading a model")  # before the body: quantizing writes files
        options = protocol.parse_load(await read_json(request, required=False))
        model, status, progress = await service.load(request.path_params["model_name"], options)
        if model is None:
            return JSONResponse({**progress, "poll": "GET /api/v1/models"}, status_code=202)
        body = {**model_info(model), "status": status, "load_time": round(model.load_time, 3)}
        if options.prefer_gpu and model.device == "cpu":
            body["note"] = "this build has no GPU backend: the model runs on the CPU"
        return JSONResponse(body)

    async def unload_model(request: Request) -> JSONResponse:
        require_admin(request.scope, "unloading a model")
        name, model = host.unload(request.path_params["model_name"])
        if model is None:
            return JSONResponse({"name": name, "status": "not_loaded", "loaded": False})
        return JSONResponse({"name": name, "status": "unloading" if model.active else "unloaded",
                             "loaded": False, "active_requests": model.active})

    return [
        Route("/api/v1/generate", generate, methods=["POST"]),
        Route("/api/v1/generate/stream", generate_stream, methods=["POST"]),
        Route("/api/v1/batch/generate", batch_generate, methods=["POST"]),
        Route("/api/v1/embeddings", embeddings, methods=["POST"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/api/v1/models/{model_name}/load", load_model, methods=["POST"]),
        Route("/api/v1/models/{model_name}/unload", unload_model, methods=["POST"]),
    ]


_TAG = "native API"
_MODEL = [openapi.path_parameter("model_name", "a model's name, alias or file id")]
_OBJECT = {"type": "object"}
OPENAPI_PATHS = {
    "/api/v1/generate": {"post": openapi.operation(
        "Generate text (streamed as SSE with stream: true)", _TAG,
        openapi.responses({200: protocol.COMPLETION_SCHEMA}, (*openapi.COMMON_ERRORS, 404, 409, 500),
                          event_stream=True), protocol.GENERATE_SCHEMA)},
    "/api/v1/generate/stream": {"post": openapi.operation(
        "Generate text as server-sent events", _TAG,
        openapi.responses({200: _OBJECT}, (*openapi.COMMON_ERRORS, 404, 409, 500), event_stream=True),
        protocol.GENERATE_SCHEMA)},
    "/api/v1/batch/generate": {"post": openapi.operation(
        "Run several generate requests concurrently", _TAG,
        openapi.responses({200: {"type": "object", "required": ["results"],
                                 "properties": {"results": {"type": "array"}}}}), protocol.BATCH_SCHEMA)},
    "/api/v1/embeddings": {"post": openapi.operation(
        "Embeddings of texts or token-id lists (L2-normalized)", _TAG,
        openapi.responses({200: {"type": "object", "required": ["embeddings", "dimensions", "model", "usage"],
                                 "properties": {"embeddings": {"type": "array"}}}},
                          (*openapi.COMMON_ERRORS, 404, 409, 500)), protocol.EMBEDDINGS_SCHEMA)},
    "/api/v1/models": {"get": openapi.operation(
        "The models the server sees, loaded or not", _TAG,
        openapi.responses({200: {"type": "object", "required": ["models"],
                                 "properties": {"models": {"type": "array"}}}}, (401, 429)))},
    "/api/v1/models/{model_name}/load": {"post": openapi.operation(
        "Load a model (202 while a long load goes on)", _TAG,
        openapi.responses({200: _OBJECT, 202: _OBJECT}, (*openapi.COMMON_ERRORS, 403, 404, 422, 500, 507)),
        protocol.LOAD_SCHEMA, _MODEL, body_required=False)},
    "/api/v1/models/{model_name}/unload": {"post": openapi.operation(
        "Unload a model once its requests finish", _TAG,
        openapi.responses({200: _OBJECT}, (400, 401, 403, 404, 429)), parameters=_MODEL)},
}
