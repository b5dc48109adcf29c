"""The OpenAI family's chat completions, completions and embeddings run in this process on one
Engine: the same parsers, plans, response bodies and streamed chunks the server sends, as
dicts. Streams are the family's own SSE events read back, so the chunks are the server's."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from llamaserve.engine import Engine
from llamaserve.local_chat.api import SERVICE, SETTINGS, LocalChat, typed
from llamaserve.server.chat.stream import ChatRun, FamilyStream, collect
from llamaserve.server.chat.token_text import token_text
from llamaserve.server.errors import ApiError
from llamaserve.server.openai import serving_chat, serving_completions
from llamaserve.server.openai.chat_protocol import parse_chat
from llamaserve.server.openai.embeddings_protocol import embeddings_answer
from llamaserve.server.openai.protocol import parse_completion
from llamaserve.server.openai.responses import Envelope, envelope


class OpenAIRuns:
    def __init__(self, engine: Engine, model_label: str) -> None:
        self.local: LocalChat = engine.local_chat()
        self.label = model_label  # what responses name as their model (llama-cpp-python: the model path)

    def _envelope(self, prefix: str) -> Envelope:
        return replace(envelope(prefix, self.local.model), model=self.label)

    def chat(self, body: dict[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        req = _parsed(parse_chat, body)
        model, text_of = self.local.model, token_text(self.local.model)

        async def start() -> tuple[Any, ChatRun]:
            return await _typed(serving_chat.start(req, model, SERVICE, SETTINGS))

        plan, chat = self.local.blocking(start())
        env = self._envelope("chatcmpl")
        if req.sampling.stream:
            events = serving_chat.ChatEvents(chat, env, plan, req.sampling.include_usage, text_of)
            return self.local.blocking_iterator(_chunks(events))
        choices = self.local.blocking(_whole(chat))
        return serving_chat.body(env, plan, choices, text_of)

    def completion(self, body: dict[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        req = _parsed(parse_completion, body)
        model, text_of, n = self.local.model, token_text(self.local.model), req.sampling.n

        async def start() -> tuple[Any, ChatRun]:
            return await _typed(serving_completions.start(req, model, SERVICE, SETTINGS.request_defaults))

        comp, chat = self.local.blocking(start())
        env = self._envelope("cmpl")
        if req.sampling.stream:
            events = serving_completions.CompletionEvents(chat, env, comp, req.sampling.include_usage, text_of, n)
            return self.local.blocking_iterator(_chunks(events))
        return serving_completions.body(env, comp, self.local.blocking(_whole(chat)), text_of, n)

    def embeddings(self, inputs: Any) -> dict[str, Any]:
        result = self.local.model.engine.embeddings(inputs)
        return json.loads(embeddings_answer(result.vectors, result.token_counts, self.label, "float"))


def _parsed(parse: Any, body: dict[str, Any]) -> Any:
    try:
        return parse(body)
    except ApiError as exc:
        raise typed(exc) from None


async def _typed(coroutine: Any) -> Any:
    try:
        return await coroutine
    except ApiError as exc:
        raise typed(exc) from None


async def _whole(chat: ChatRun) -> list[Any]:
    try:
        return await _typed(collect(chat))
    finally:
        chat.close()


async def _chunks(events: FamilyStream) -> AsyncIterator[dict[str, Any]]:
    """The family's SSE events as dicts; an error mid-stream raised as its typed error."""
    events.reraise = True
    try:
        async for data in events:
            for line in data.split(b"\n\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    yield json.loads(line[6:])
    except ApiError as exc:
        raise typed(exc) from None
    finally:
        await events.aclose()
