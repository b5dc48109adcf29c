"""The routes of the OpenAI-compatible API under /v1: chat completions, completions, responses,
models.

Errors here are ApiErrors like everywhere else; under /v1 they are rendered in OpenAI's
shape (server/openai/errors.py)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import openapi, resumable
from llamaserve.server.body import read_json
from llamaserve.server.chat import plan as chat_plan
from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.stream import ChatRun, Choice, collect
from llamaserve.server.chat.token_text import token_text
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.embeddings import embed
from llamaserve.server.generation import GenerationService
from llamaserve.server.llamacpp import extensions
from llamaserve.server.llamacpp.reports import Reports
from llamaserve.server.offloop import json_response
from llamaserve.server.openai import serving_chat, serving_completions, serving_responses
from llamaserve.server.openai.chat_protocol import CHAT_SCHEMA, parse_chat
from llamaserve.server.openai.embeddings_protocol import EMBEDDINGS_SCHEMA, embeddings_answer, parse_embeddings
from llamaserve.server.openai.protocol import COMPLETION_SCHEMA, parse_completion
from llamaserve.server.openai.responses import envelope, model_object
from llamaserve.server.openai.responses_protocol import RESPONSES_SCHEMA, parse_responses
from llamaserve.server.protocol_values import json_array, json_object
from llamaserve.server.sse import EventStreamResponse, until_disconnect


def _created(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


async def whole(chat: ChatRun, request: Request) -> list[Choice]:
    """Every choice of a run, whole; a client that leaves first cancels it (ClientGone)."""
    try:
        return await until_disconnect(collect(chat), request.receive)
    finally:
        chat.close()


def routes(service: GenerationService) -> list[Route]:
    host, config = service.host, service.config
    sessions = service.resumable  # streams a client may reattach to (X-Conversation-Id), one set per app

    async def start_chat(req: ChatRequest, reports: Reports = Reports()) -> tuple[chat_plan.ChatPlan, ChatRun]:
        """Lease the model once, plan on it, submit every choice to it."""
        async with service.lease(req.model) as model:
            return await serving_chat.start(reports.applied(req, model.engine.n_ctx), model, service, config)

    async def chat_completions(request: Request) -> Response:
        translated = extensions.translate(await read_json(request), verbose=config.verbose)
        req = parse_chat(extensions.chat_logprobs(translated))
        plan, chat = await start_chat(req, translated.reports)
        env, text_of = envelope("chatcmpl", plan.model), token_text(plan.model)
        if req.sampling.stream:
            events = serving_chat.ChatEvents(chat, env, plan, req.sampling.include_usage, text_of, translated.reports)
            if (conversation := request.headers.get(resumable.HEADER)) is not None:
                session = sessions.start(resumable.conv_id(conversation, "X-Conversation-Id"), events)
                return EventStreamResponse(session.read(0))  # the client may go: the generation goes on
            return EventStreamResponse(events)
        return JSONResponse(serving_chat.body(env, plan, await whole(chat, request), text_of, translated.reports))

    async def chat_input_tokens(request: Request) -> Response:
        """The tokens a chat request's messages would take (its chat template applied)."""
        translated = extensions.translate(await read_json(request), verbose=config.verbose)
        req = parse_chat(extensions.chat_logprobs(translated))
        async with service.lease(req.model) as model:
            plan = await chat_plan.plan(req, model, config, as_tokens=True)
        return JSONResponse({"input_tokens": len(plan.prompt)})

    async def responses(request: Request) -> Response:
        req = parse_responses(await read_json(request))
        plan, chat = await start_chat(req.chat)
        shell = serving_responses.shell(req, plan.model)
        if req.chat.sampling.stream:
            return EventStreamResponse(serving_responses.ResponseEvents(chat, shell))
        return JSONResponse(serving_responses.body(shell, (await whole(chat, request))[0]))

    async def input_tokens(request: Request) -> Response:
        """The tokens a Responses request's input would take (its chat template applied)."""
        req = parse_responses(await read_json(request))
        async with service.lease(req.chat.model) as model:
            plan = await chat_plan.plan(req.chat, model, config, as_tokens=True)
        return JSONResponse({"object": "response.input_tokens", "input_tokens": len(plan.prompt)})

    async def completions(request: Request) -> Response:
        translated = extensions.translate(await read_json(request), verbose=config.verbose)
        req = parse_completion(extensions.completion_logprobs(translated))
        async with service.lease(req.model) as model:
            comp, chat = await serving_completions.start(translated.reports.applied(req, model.engine.n_ctx), model,
                                                         service, config.request_defaults)
        env, text_of, n = envelope("cmpl", model), token_text(model), req.sampling.n
        if req.sampling.stream:
            return EventStreamResponse(serving_completions.CompletionEvents(
                chat, env, comp, req.sampling.include_usage, text_of, n))
        choices = await whole(chat, request)
        answer = serving_completions.body(env, comp, choices, text_of, n)
        return JSONResponse(translated.reports.add_to(answer, choices, comp.prompts[0], text_of))

    def models() -> list[dict]:
        """One entry per model (llama-server's shape): its first name, all of them as aliases."""
        found = []
        current = host.current
        served = tuple(n.strip() for n in config.served_model_name)
        asleep = None  # the server's model, unloaded when idle: still listed as the server's
        if current is None and host.state == "idle" and served:
            asleep = host.configured_entry().path.resolve()
            found.append(model_object(served[0], 0, (*served, "default"), config.model_tags))
        if current is not None:
            names = host.listed_names(current)
            # `default` is a name every API takes for the server's model: its last alias
            found.append(model_object(names[0], _created(current.path),
                                      (*names, *(() if "default" in names else ("default",))), config.model_tags))
        for path in host.model_files():
            if path.resolve() != (current.path.resolve() if current is not None else asleep):
                found.append(model_object(path.stem, _created(path)))
        return found

    async def list_models(request: Request) -> JSONResponse:
        # A thread: the listing rescans the models folder (new files, changed headers).
        return JSONResponse({"object": "list", "data": await asyncio.to_thread(models)})

    async def get_model(request: Request) -> JSONResponse:
        wanted = request.path_params["model_id"]
        current = host.current
        listed = await asyncio.to_thread(models)
        exact = [m for m in listed if wanted.lower() in (a.lower() for a in m["aliases"])]
        known = [m for m in listed if current is not None and m["id"] == current.name and current.answers_to(wanted)]
        for model in exact:  # under the name asked for, one of its aliases (OpenAI's SDKs compare ids)
            return JSONResponse({**model, "id": next(a for a in model["aliases"] if a.lower() == wanted.lower())})
        for model in known:
            return JSONResponse(model)
        raise ApiError(404, "MODEL_NOT_FOUND", f"The model {wanted[:64]!r} does not exist",
                       "GET /v1/models lists the models")

    async def stream_session(request: Request) -> Response:
        """GET: a resumable stream's events from byte `from` on; DELETE: stop it."""
        conv_id = resumable.conv_id(request.query_params.get("conv_id"))
        if request.method == "DELETE":
            sessions.stop(conv_id)
            return Response(status_code=204)
        session = sessions.find(conv_id)
        return EventStreamResponse(session.read(resumable.offset(request.query_params.get("from"), session)))

    async def lookup_streams(request: Request) -> Response:
        ids = json_array("conversation_ids", json_object("body", await read_json(request)).get("conversation_ids"))
        if len(ids) > resumable.MAX_SESSIONS:
            raise invalid(f"conversation_ids: at most {resumable.MAX_SESSIONS}")
        states = [sessions.state(resumable.conv_id(i if isinstance(i, str) else None, "conversation_ids[]"))
                  for i in ids]
        return JSONResponse({"sessions": [state for state in states if state is not None]})

    async def embeddings(request: Request) -> Response:
        req = parse_embeddings(await read_json(request))
        model, result = await embed(service, req.model, req.inputs, req.dimensions)
        return await json_response(embeddings_answer, result.vectors, result.token_counts, model.name,
                                   req.encoding_format)

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions/input_tokens", chat_input_tokens, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/responses/input_tokens", input_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/v1/stream", stream_session, methods=["GET", "DELETE"]),
        Route("/v1/streams/lookup", lookup_streams, methods=["POST"]),
    ]


_TAG = "OpenAI-compatible API"
# llama-server's own fields, which its clients send here too (server/llamacpp/extensions.py)
_CHAT = {**CHAT_SCHEMA, "properties": {**CHAT_SCHEMA["properties"], **extensions.SCHEMA}}
_COMPLETION = {**COMPLETION_SCHEMA, "properties": {**COMPLETION_SCHEMA["properties"], **extensions.SCHEMA}}
_ERRORS = (*openapi.COMMON_ERRORS, 404, 500)
_OBJECT = {"type": "object"}
_CONV_ID = {"name": "conv_id", "in": "query", "required": True, "description": "the X-Conversation-Id the "
            "stream was started with", "schema": {"type": "string", "minLength": 1, "maxLength": resumable.MAX_ID}}
_FROM = {"name": "from", "in": "query", "required": False, "description": "byte offset to replay from (0)",
         "schema": {"type": "integer", "minimum": 0}}
_LIST = {"type": "object", "required": ["object", "data"],
         "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}
OPENAPI_PATHS = {
    "/v1/chat/completions": {"post": openapi.operation(
        "A chat completion (streamed as SSE with stream: true)", _TAG,
        openapi.responses({200: _OBJECT}, _ERRORS, error_schema="OpenAIError", event_stream=True), _CHAT)},
    "/v1/completions": {"post": openapi.operation(
        "A text completion (streamed as SSE with stream: true)", _TAG,
        openapi.responses({200: _OBJECT}, _ERRORS, error_schema="OpenAIError", event_stream=True),
        _COMPLETION)},
    "/v1/chat/completions/input_tokens": {"post": openapi.operation(
        "The number of input tokens a chat request's messages would use", _TAG,
        openapi.responses({200: {"type": "object", "required": ["input_tokens"], "properties": {
            "input_tokens": {"type": "integer"}}}}, _ERRORS, error_schema="OpenAIError"), _CHAT)},
    "/v1/responses": {"post": openapi.operation(
        "A response of the Responses API, stateless (typed SSE events with stream: true)", _TAG,
        openapi.responses({200: _OBJECT}, _ERRORS, error_schema="OpenAIError", event_stream=True),
        RESPONSES_SCHEMA)},
    "/v1/responses/input_tokens": {"post": openapi.operation(
        "The number of input tokens a Responses request would use", _TAG,
        openapi.responses({200: {"type": "object", "required": ["object", "input_tokens"], "properties": {
            "object": {"const": "response.input_tokens"}, "input_tokens": {"type": "integer"}}}},
            _ERRORS, error_schema="OpenAIError"), RESPONSES_SCHEMA)},
    "/v1/embeddings": {"post": openapi.operation(
        "Embeddings (float or base64)", _TAG,
        openapi.responses({200: _LIST}, _ERRORS, error_schema="OpenAIError"), EMBEDDINGS_SCHEMA)},
    "/v1/models": {"get": openapi.operation(
        "The models", _TAG, openapi.responses({200: _LIST}, (401, 429), error_schema="OpenAIError"))},
    "/v1/stream": {
        "get": openapi.operation(
            "Reattach to a resumable chat stream (X-Conversation-Id): its events from byte `from` on, then live",
            _TAG, openapi.responses({200: _OBJECT}, (400, 401, 404, 429), error_schema="OpenAIError",
                                    event_stream=True), parameters=[_CONV_ID, _FROM]),
        "delete": openapi.operation(
            "Stop a resumable chat stream's generation and forget it", _TAG,
            {"204": {"description": "stopped (or unknown)"}}, parameters=[_CONV_ID])},
    "/v1/streams/lookup": {"post": openapi.operation(
        "The state of the resumable streams named (no listing: only ids the caller knows)", _TAG,
        openapi.responses({200: _OBJECT}, (400, 401, 429), error_schema="OpenAIError"),
        {"type": "object", "required": ["conversation_ids"], "properties": {
            "conversation_ids": {"type": "array", "items": {"type": "string"},
                                 "description": "the X-Conversation-Id of each stream asked about"}}})},
    "/v1/models/{model_id}": {"get": openapi.operation(
        "One model", _TAG, openapi.responses({200: _OBJECT}, (401, 404, 429), error_schema="OpenAIError"),
        parameters=[openapi.path_parameter("model_id", "a model's id")])},
}
