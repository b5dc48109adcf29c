"""The routes of llama-server's own API: /completion (its shape), /infill (a /completion with a
fill-in-the-middle prompt), /rerank, /props, /slots, /apply-template, the non-OpenAI
/embeddings, /tokenize and /detokenize, and its paths without /v1 for the OpenAI routes (the
same handlers as under /v1)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import llamaserve
from llamaserve.native import sampling_defaults
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.hosting.loaded import LoadedModel
from llamaserve.results import SlotFile
from llamaserve.server import openapi
from llamaserve.server.body import read_json
from llamaserve.server.chat import plan as chat_plan
from llamaserve.server.chat import prompt as prompts
from llamaserve.server.chat.stream import collect
from llamaserve.server.chat.token_text import token_text
from llamaserve.server.embeddings import embed
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.generation import GenerationService
from llamaserve.server.llamacpp import (
    completion_protocol, cors_proxy, infill_protocol, protocol, rerank_protocol, serving_completion, slots_protocol,
    tools_router)
from llamaserve.server.offloop import json_response
from llamaserve.server.openai import api_router as openai_router, serving_completions
from llamaserve.server.openai.api_router import OPENAPI_PATHS as OPENAI_PATHS
from llamaserve.server.openai.chat_protocol import CHAT_SCHEMA, parse_chat
from llamaserve.server.protocol_values import json_array, json_object
from llamaserve.server.sse import EventStreamResponse, until_disconnect

RERANK_PATHS = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")
# llama-server's paths without /v1 -> the OpenAI route serving them
OPENAI_ALIASES = {"/chat/completions": "/v1/chat/completions",
                  "/chat/completions/input_tokens": "/v1/chat/completions/input_tokens", "/models": "/v1/models",
                  "/responses": "/v1/responses", "/responses/input_tokens": "/v1/responses/input_tokens"}


def routes(service: GenerationService) -> list[Route]:
    host, config = service.host, service.config
    openai = {route.path: route for route in openai_router.routes(service)}

    async def completion(request: Request) -> Response:
        return await answer_completion(request, await read_json(request))

    async def infill(request: Request) -> Response:
        req = infill_protocol.parse(await read_json(request))

        async def framed(model: LoadedModel) -> dict[str, Any]:
            n_predict = req.completion.get("n_predict")
            given = isinstance(n_predict, int) and not isinstance(n_predict, bool) and n_predict > 0
            room = n_predict if given else config.default_max_tokens
            prompt = await asyncio.to_thread(  # tokenizing the files around the cursor takes a while
                model.engine.fim_prompt, req.input_prefix, req.input_suffix, prompt=req.prompt,
                input_extra=req.input_extra, n_predict=room)
            return {**req.completion, "prompt": prompt}

        return await answer_completion(request, req.completion, framed)

    async def answer_completion(request: Request, body: Any,
                                framed: Callable[[LoadedModel], Awaitable[dict[str, Any]]] | None = None) -> Response:
        """/completion's answer to `body`; `framed` makes its prompt from the leased model (/infill)."""
        async with service.lease(completion_protocol.model_of(body)) as model:
            if framed is not None:
                body = await framed(model)
            req = completion_protocol.parse(body, lambda text: model.engine.tokenize(text, add_special=False),
                                           config.verbose)
            openai_req = req.reports.applied(req.request, model.engine.n_ctx)
            comp, chat = await serving_completions.start(openai_req, model, service, config.request_defaults)
        shape = serving_completion.Shape(model.name, comp, token_text(model), model.engine.n_ctx, req.return_tokens,
                                         openai_req.logprobs, req.fields)
        if openai_req.sampling.stream:
            return EventStreamResponse(serving_completion.CompletionEvents(chat, shape, req.reports))
        try:
            choices = await until_disconnect(collect(chat), request.receive)
        finally:
            chat.close()
        return JSONResponse(serving_completion.body(shape, choices))

    async def embeddings(request: Request) -> Response:
        """The older, non-OpenAI answer: [{"index", "embedding": [vector]}]."""
        body = json_object("body", await read_json(request))
        content = body.get("content", body.get("input"))
        inputs = [content] if isinstance(content, str) else json_array("content", content)
        if not inputs:
            raise invalid("content: must not be empty")
        _, result = await embed(service, completion_protocol.model_of(body), inputs)
        return JSONResponse([{"index": i, "embedding": [row]} for i, row in enumerate(result.vectors.tolist())])

    def default_params() -> dict[str, Any]:
        """What a request that names nothing gets: the server's defaults over the engine's."""
        params = {"seed": -1, **sampling_defaults(), **config.request_defaults}
        params["n_predict"] = params.pop("max_tokens")
        return params

    awake: dict[str, dict[str, Any]] = {}  # the last answer while a model was loaded
    describing: set[asyncio.Task[Any]] = set()

    def describe_when_loaded(model: LoadedModel) -> None:
        """Described at once, so that /props can answer about it once it is asleep."""
        async def quietly() -> None:
            with contextlib.suppress(Exception):  # a broken template: /props says so when asked
                await described(model)

        task = asyncio.get_running_loop().create_task(quietly())
        describing.add(task)
        task.add_done_callback(describing.discard)

    host.on_register.append(describe_when_loaded)

    async def described(model: LoadedModel) -> dict[str, Any]:
        template = await prompts.template_of(model)
        meta = model.engine.metadata
        awake["props"] = {
            "default_generation_settings": {"n_ctx": model.engine.n_ctx, "params": default_params()},
            "total_slots": model.engine.n_parallel, "model_alias": model.name, "model_path": str(model.path),
            "chat_template": template.source or "", "bos_token": meta.get("bos_token", ""),
            "eos_token": meta.get("eos_token", ""), "modalities": {"vision": False, "audio": False},
            "build_info": f"llamaserve {llamaserve.__version__}", "is_sleeping": False,
            "cors_proxy_enabled": config.ui_mcp_proxy}  # a web UI offers its MCP proxy when true
        return awake["props"]

    async def rerank(request: Request) -> Response:
        req = rerank_protocol.parse(await read_json(request))
        async with service.lease(req.model) as model:
            # A thread: scoring the pairs takes a while, and the streams go on meanwhile.
            ranking = await asyncio.to_thread(model.engine.rerank, req.query, req.documents, top_n=req.top_n)
            return JSONResponse(rerank_protocol.answer(req, model.name, ranking))

    async def props(request: Request) -> Response:
        if host.state == "idle" and "props" in awake:  # unloaded when idle (--idle-unload): not woken
            return JSONResponse({**awake["props"], "is_sleeping": True})
        if host.current is not None:  # reading about a model is no use of it: it may still fall asleep
            return JSONResponse(await described(host.current))
        async with service.lease(None) as model:
            return JSONResponse(await described(model))

    async def slots(request: Request) -> Response:
        if not config.slots_endpoint:  # llama-server's answer under --no-slots
            raise ApiError(501, "NOT_SUPPORTED", "the slots endpoint is off (--no-slots)")
        async with service.lease(None) as model:
            busy = model.engine.busy_slots
            return JSONResponse([{"id": i, "id_task": -1, "n_ctx": model.engine.n_ctx, "is_processing": i < busy,
                                  "speculative": model.engine.speculation != "off"}
                                 for i in range(model.engine.n_parallel)])

    async def slot_action(request: Request) -> Response:
        if not config.slots_endpoint:
            raise ApiError(501, "NOT_SUPPORTED", "the slots endpoint is off (--no-slots)")
        body = await read_json(request) if request.query_params.get("action") != "erase" else None
        req = slots_protocol.parse(request.path_params["id_slot"], request.query_params.get("action"), body,
                                   config.slot_save_path)
        async with service.lease(None) as model:
            engine = model.engine
            # A thread: the scheduler does it between two steps, and the file takes a while.
            if req.action == "erase":
                done: SlotFile | int = await asyncio.to_thread(engine.erase_slot, req.slot)
            elif req.action == "save":
                done = await asyncio.to_thread(engine.save_slot, req.slot, req.path)
            else:
                done = await asyncio.to_thread(engine.restore_slot, req.slot, req.path)
        return JSONResponse(slots_protocol.answer(req, done))

    async def apply_template(request: Request) -> Response:
        req = parse_chat(await read_json(request))
        async with service.lease(req.model) as model:
            plan = await chat_plan.plan(req, model, config)
        prompt = plan.prompt if isinstance(plan.prompt, str) else model.engine.detokenize(plan.prompt)
        return JSONResponse({"prompt": prompt})

    async def tokenize(request: Request) -> Response:
        req = protocol.parse_tokenize(await read_json(request))
        async with service.lease(req.model) as model:  # loads an unloaded model, as llama-server wakes
            # a long text, and its answer, must not stall the streams
            return await json_response(protocol.tokenize_answer, model.engine, req)

    async def detokenize(request: Request) -> Response:
        # Checking a long list of ids takes a while too: off the loop as well.
        req = await asyncio.to_thread(protocol.parse_detokenize, await read_json(request))
        async with service.lease(req.model) as model:
            return await json_response(protocol.detokenize_answer, model.engine, req)

    return [Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"]),
            Route("/completion", completion, methods=["POST"]),
            Route("/completions", completion, methods=["POST"]),
            Route("/infill", infill, methods=["POST"]),
            *(Route(path, rerank, methods=["POST"]) for path in RERANK_PATHS),
            Route("/embedding", embeddings, methods=["POST"]),
            Route("/embeddings", embeddings, methods=["POST"]),
            Route("/props", props, methods=["GET"]),
            Route("/slots", slots, methods=["GET"]),
            Route("/slots/{id_slot}", slot_action, methods=["POST"]),
            Route("/apply-template", apply_template, methods=["POST"]),
            *(Route(alias, openai[path].endpoint, methods=openai[path].methods) for alias, path in OPENAI_ALIASES.items()),
            *tools_router.routes(), *cors_proxy.routes(config.ui_mcp_proxy)]


_TAG = "llama-server endpoints"
OPENAPI_PATHS = {
    "/tokenize": {"post": openapi.operation(
        "Text to token ids (with_pieces: each with its text)", _TAG,
        openapi.responses({200: {"type": "object", "required": ["tokens"],
                                 "properties": {"tokens": {"type": "array"}}}}, (*openapi.COMMON_ERRORS, 404),
            error_schema="LlamaCppError"), protocol.TOKENIZE_SCHEMA)},
    "/detokenize": {"post": openapi.operation(
        "Token ids to text", _TAG,
        openapi.responses({200: {"type": "object", "required": ["content"],
                                 "properties": {"content": {"type": "string"}}}}, (*openapi.COMMON_ERRORS, 404),
            error_schema="LlamaCppError"), protocol.DETOKENIZE_SCHEMA)},
    "/completion": {"post": openapi.operation(
        "A completion in llama-server's shape (streamed as SSE with stream: true)", _TAG,
        openapi.responses({200: {"type": ["object", "array"]}}, (*openapi.COMMON_ERRORS, 404),
                          error_schema="LlamaCppError", event_stream=True),
        completion_protocol.COMPLETION_SCHEMA)},
    "/completions": {"post": openapi.operation(
        "The same as /completion", _TAG,
        openapi.responses({200: {"type": ["object", "array"]}}, (*openapi.COMMON_ERRORS, 404),
                          error_schema="LlamaCppError", event_stream=True),
        completion_protocol.COMPLETION_SCHEMA)},
    **{path: {"post": openapi.operation(
        "Embeddings, the older answer: [{index, embedding: [vector]}]", _TAG,
        openapi.responses({200: {"type": "array"}}, (*openapi.COMMON_ERRORS, 404), error_schema="LlamaCppError"),
        {"type": "object", "required": ["content"], "properties": {
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "model": protocol.MODEL_SCHEMA}})} for path in ("/embedding", "/embeddings")},
    "/infill": {"post": openapi.operation(
        "Fill in the middle (code completion at a cursor): a completion in /completion's shape of a prompt framed "
        "from the model's FIM tokens (400 for a model without them)", _TAG,
        openapi.responses({200: {"type": "object"}}, (*openapi.COMMON_ERRORS, 404), error_schema="LlamaCppError",
                          event_stream=True),
        infill_protocol.INFILL_SCHEMA)},
    **{path: {"post": openapi.operation(
        "The documents ranked by relevance to the query, best first (a reranking model: 400 for another)", _TAG,
        openapi.responses({200: {"type": ["object", "array"]}}, (*openapi.COMMON_ERRORS, 404),
                          error_schema="LlamaCppError"),
        rerank_protocol.RERANK_SCHEMA)} for path in RERANK_PATHS},
    "/props": {"get": openapi.operation(
        "The served model: path, chat template, slots, context, BOS and EOS, build", _TAG,
        openapi.responses({200: {"type": "object"}}, (401, 429, 503), error_schema="LlamaCppError"))},
    "/slots": {"get": openapi.operation(
        "The slots: each one's context and whether it is busy", _TAG,
        openapi.responses({200: {"type": "array"}}, (401, 429, 501, 503), error_schema="LlamaCppError"))},
    "/slots/{id_slot}": {"post": openapi.operation(
        "An idle slot's cached prompt saved to a file of --slot-save-path, restored from one, or erased", _TAG,
        openapi.responses({200: {"type": "object", "required": ["id_slot"]}}, (400, 401, 403, 429, 501, 503),
                          error_schema="LlamaCppError"),
        {"type": "object", "properties": {"filename": {
            "type": "string", "minLength": 1, "maxLength": 255,
            "description": "a file name in --slot-save-path (save and restore)"}}},
        parameters=[openapi.path_parameter("id_slot", "the slot's number"),
                    {"name": "action", "in": "query", "required": True, "description": "save, restore or erase",
                     "schema": {"enum": ["save", "restore", "erase"]}}], body_required=False)},
    "/apply-template": {"post": openapi.operation(
        "The chat template applied to messages: {prompt}", _TAG,
        openapi.responses({200: {"type": "object", "required": ["prompt"]}}, (*openapi.COMMON_ERRORS, 404),
                          error_schema="LlamaCppError"), CHAT_SCHEMA)},
    **{alias: {method: {**op, "summary": op["summary"] + f" (as {path})"}
               for method, op in OPENAI_PATHS[path].items()} for alias, path in OPENAI_ALIASES.items()},
    **tools_router.OPENAPI_PATHS,
    **cors_proxy.OPENAPI_PATHS,
}
