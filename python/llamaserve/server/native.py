"""The native API under /api/v1: generate, stream, batch, models."""
from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import schemas
from llamaserve.server.body import read_json
from llamaserve.server.errors import ApiError
from llamaserve.server.generation import GenerationService
from llamaserve.server.sse import until_disconnect


def routes(service: GenerationService) -> list[Route]:
    host, config = service.host, service.config

    async def generate(request: Request) -> Response:
        body = schemas.parse_generate(await read_json(request))
        await host.ensure(body.model)  # --auto-load
        if body.stream:
            return service.open_stream(body)
        return JSONResponse(await until_disconnect(service.complete(body), request.receive))

    async def generate_stream(request: Request) -> Response:
        body = schemas.parse_generate(await read_json(request))
        await host.ensure(body.model)  # --auto-load
        return service.open_stream(body)

    async def batch_generate(request: Request) -> JSONResponse:
        items = schemas.parse_batch(await read_json(request), config.max_batch_size)
        for name in dict.fromkeys(i.get("model") for i in items if isinstance(i, dict)):
            if name is None or isinstance(name, str):
                with contextlib.suppress(ApiError):  # the items report their own errors
                    await host.ensure(name)  # --auto-load
        return JSONResponse({"results": await until_disconnect(service.batch(items), request.receive)})

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"models": host.catalog()})

    async def load_model(request: Request) -> JSONResponse:
        """200 with the model once loaded; 202 with the progress when the load (quantizing
        first, if asked to) outlasts --load-wait; it goes on, and the listing shows it."""
        options = schemas.parse_load(await read_json(request, required=False))
        model, job = host.begin_load(request.path_params["model_name"], options.quantization,
                                     options.prefer_gpu, options.allow_requantize)
        status = "already_loaded"
        if job is not None:
            assert job.task is not None
            done, _ = await asyncio.wait({job.task}, timeout=config.load_wait)
            if not done:
                return JSONResponse({**job.status(), "poll": "GET /api/v1/models"}, status_code=202)
            model, status = job.task.result(), "loaded"
        assert model is not None
        body = {**model.info(), "status": status, "load_time": round(model.load_time, 3)}
        if options.prefer_gpu and model.device == "cpu":
            body["note"] = "this build has no GPU backend: the model runs on the CPU"
        return JSONResponse(body)

    async def unload_model(request: Request) -> JSONResponse:
        return JSONResponse(host.unload(request.path_params["model_name"]))

    return [
        Route("/api/v1/generate", generate, methods=["POST"]),
        Route("/api/v1/generate/stream", generate_stream, methods=["POST"]),
        Route("/api/v1/batch/generate", batch_generate, methods=["POST"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/api/v1/models/{model_name}/load", load_model, methods=["POST"]),
        Route("/api/v1/models/{model_name}/unload", unload_model, methods=["POST"]),
    ]
