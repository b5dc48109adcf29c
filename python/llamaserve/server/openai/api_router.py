"""The routes of the OpenAI-compatible API under /v1: chat completions, completions, models.

Errors here are ApiErrors like everywhere else; under /v1 they are rendered in OpenAI's
shape (server/openai/errors.py)."""
from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server.body import read_json
from llamaserve.server.errors import ApiError
from llamaserve.server.generation import GenerationService
from llamaserve.server.openai import serving_chat, serving_completions
from llamaserve.server.openai.chat_protocol import parse_chat
from llamaserve.server.openai.choices import Run, envelope
from llamaserve.server.openai.protocol import parse_completion
from llamaserve.server.openai.responses import model_object
from llamaserve.server.sse import EventStreamResponse, until_disconnect


def _created(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


def routes(service: GenerationService) -> list[Route]:
    host, config = service.host, service.config

    async def chat_completions(request: Request) -> Response:
        req = parse_chat(await read_json(request))
        await host.ensure(req.model)  # --auto-load
        model = host.acquire(req.model)
        try:
            chat = await serving_chat.plan(req, model, config.default_max_tokens)
        finally:
            host.release(model)
        run = Run(service, req.model, [chat.prompt] * req.sampling.n, chat.arguments)
        env, text_of = envelope("chatcmpl", model), serving_chat.token_text(model)
        if req.sampling.stream:
            return EventStreamResponse(serving_chat.ChatEvents(run, env, chat, req.sampling.include_usage, text_of))
        try:
            outputs = await until_disconnect(run.collect(), request.receive)
        finally:
            run.close()
        return JSONResponse(serving_chat.body(env, chat, outputs, text_of))

    async def completions(request: Request) -> Response:
        req = parse_completion(await read_json(request))
        await host.ensure(req.model)  # --auto-load
        model = host.acquire(req.model)
        try:
            comp = serving_completions.plan(req, model, config.default_max_tokens)
        finally:
            host.release(model)
        run = Run(service, req.model, comp.prompts, comp.arguments)
        env, text_of, n = envelope("cmpl", model), serving_chat.token_text(model), req.sampling.n
        if req.sampling.stream:
            return EventStreamResponse(serving_completions.CompletionEvents(
                run, env, comp, req.sampling.include_usage, text_of, n))
        try:
            outputs = await until_disconnect(run.collect(), request.receive)
        finally:
            run.close()
        return JSONResponse(serving_completions.body(env, comp, outputs, text_of, n))

    def models() -> list[dict]:
        found = []
        current = host.current
        if current is not None:
            found.append(model_object(current.name, _created(current.path)))
        for path in host.model_files():
            if current is None or path.resolve() != current.path.resolve():
                found.append(model_object(path.stem, _created(path)))
        return found

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": models()})

    async def get_model(request: Request) -> JSONResponse:
        wanted = request.path_params["model_id"]
        current = host.current
        for model in models():
            if model["id"].lower() == wanted.lower() or (
                    current is not None and model["id"] == current.name and current.answers_to(wanted)):
                return JSONResponse(model)
        raise ApiError(404, "MODEL_NOT_FOUND", f"The model {wanted[:64]!r} does not exist",
                       "GET /v1/models lists the models")

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    ]
