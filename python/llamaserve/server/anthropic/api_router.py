"""The route of the Anthropic Messages API: POST /v1/messages.

Errors here are ApiErrors like everywhere else; under /v1/messages they are rendered in
Anthropic's shape (server/anthropic/errors.py)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.server import openapi
from llamaserve.server.anthropic import serving
from llamaserve.server.anthropic.protocol import MESSAGES_SCHEMA, parse_messages
from llamaserve.server.body import read_json
from llamaserve.server.generation import GenerationService
from llamaserve.server.openai.choices import Run
from llamaserve.server.openai.serving_chat import token_text
from llamaserve.server.sse import EventStreamResponse, until_disconnect


def routes(service: GenerationService) -> list[Route]:
    async def messages(request: Request) -> Response:
        req = parse_messages(await read_json(request))
        async with service.lease(req.model) as model:
            plan = await serving.plan(req, model, service.config.default_max_tokens)
        run, text_of = Run(service, req.model, [plan.prompt], [plan.arguments]), token_text(model)
        if req.sampling.stream:
            return EventStreamResponse(serving.MessageEvents(run, plan, text_of))
        try:
            (output,) = await until_disconnect(run.collect(), request.receive)
        finally:
            run.close()
        return JSONResponse(serving.body(plan, output, text_of))

    return [Route("/v1/messages", messages, methods=["POST"])]


OPENAPI_PATHS = {
    "/v1/messages": {"post": openapi.operation(
        "A message (streamed as Anthropic's SSE events with stream: true)", "Anthropic-compatible API",
        openapi.responses({200: {"type": "object"}}, (*openapi.COMMON_ERRORS, 404, 500), error_schema="AnthropicError",
                          event_stream=True), MESSAGES_SCHEMA)},
}
