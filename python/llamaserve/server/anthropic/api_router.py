"""The routes of the Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens.

Errors here are ApiErrors like everywhere else; under /v1/messages they are rendered in
Anthropic's shape (server/anthropic/errors.py)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import openapi
from llamaserve.server.anthropic import serving
from llamaserve.server.anthropic.protocol import COUNT_SCHEMA, MESSAGES_SCHEMA, parse_messages
from llamaserve.server.body import read_json
from llamaserve.server.chat import plan as chat_plan
from llamaserve.server.chat.run import Run
from llamaserve.server.chat.stream import ChatRun, collect
from llamaserve.server.chat.token_text import token_text
from llamaserve.server.generation import GenerationService
from llamaserve.server.sse import EventStreamResponse, until_disconnect


def routes(service: GenerationService) -> list[Route]:
    async def messages(request: Request) -> Response:
        req = parse_messages(await read_json(request))
        stop_sequences = req.sampling.arguments.get("stop", [])
        async with service.lease(req.model) as model:
            plan = await chat_plan.plan(req, model, service.config, as_tokens=True)
            run = Run(service, model, [plan.prompt], serving.engine_arguments(plan, stop_sequences))
        chat, message, text_of = ChatRun(run, plan.parser), serving.settings(plan, stop_sequences), token_text(model)
        if req.sampling.stream:
            return EventStreamResponse(serving.MessageEvents(chat, message, text_of))
        try:
            (choice,) = await until_disconnect(collect(chat), request.receive)
        finally:
            chat.close()
        return JSONResponse(serving.body(message, choice, text_of))

    async def count_tokens(request: Request) -> Response:
        """The prompt's tokens as the model would see them (Claude Code asks every turn)."""
        req = parse_messages(await read_json(request), required=("messages",))
        async with service.lease(req.model) as model:
            plan = await chat_plan.plan(req, model, service.config, as_tokens=True)
        return JSONResponse({"input_tokens": len(plan.prompt)})

    return [Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"])]


_ERRORS = (*openapi.COMMON_ERRORS, 404, 500)
OPENAPI_PATHS = {
    "/v1/messages": {"post": openapi.operation(
        "A message (streamed as Anthropic's SSE events with stream: true)", "Anthropic-compatible API",
        openapi.responses({200: {"type": "object"}}, _ERRORS, error_schema="AnthropicError", event_stream=True),
        MESSAGES_SCHEMA)},
    "/v1/messages/count_tokens": {"post": openapi.operation(
        "The number of input tokens a message request would use", "Anthropic-compatible API",
        openapi.responses({200: {"type": "object", "required": ["input_tokens"],
                                 "properties": {"input_tokens": {"type": "integer"}}}},
                          _ERRORS, error_schema="AnthropicError"), COUNT_SCHEMA)},
}
