"""Engine.chat and Engine.achat: a request in the OpenAI chat shape (messages, tools,
tool_choice, response_format and the sampling fields) parsed by the OpenAI family's own
parser (one validator per field), planned and run by the chat pipeline the server uses, read
through the same output parsers. Errors are typed: InvalidRequest for bad input, the engine's
own errors otherwise."""
from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from llamaserve.config import ServerConfig
from llamaserve.engine import Engine
from llamaserve.errors import EngineError, InvalidRequest
from llamaserve.local_chat.loop import LoopThread
from llamaserve.local_chat.results import ChatChunk, ChatReply, ToolCallDelta, Usage
from llamaserve.local_chat.service import LocalService, local_model
from llamaserve.server.chat.formats.events import CallArguments, CallStart, ReasoningDelta, TextDelta
from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.stream import ChatRun, Update, collect
from llamaserve.server.errors import ApiError
from llamaserve.server.openai import serving_chat
from llamaserve.server.openai.chat_protocol import parse_chat

T = TypeVar("T")
SETTINGS = ServerConfig()  # the server's defaults: 256 tokens a reply, reasoning apart from the answer
_SERVER_ONLY = ("model", "stream", "stream_options", "n")  # what a call to one engine has no use for
SERVICE = LocalService()


def typed(exc: ApiError) -> EngineError:
    """An error the pipeline reports as the HTTP status it would answer, as Python's type."""
    return InvalidRequest(exc.message) if exc.status == 400 else EngineError(exc.message)


class LocalChat:
    """One Engine's chat: its model as the pipeline sees it, and the loop blocking calls use."""

    def __init__(self, engine: Engine) -> None:
        self.model = local_model(engine)
        self._loop: LoopThread | None = None

    def request(self, messages: Any, options: dict[str, Any]) -> ChatRequest:
        for name in _SERVER_ONLY:
            if name in options:
                raise InvalidRequest(f"{name}: not an argument of Engine.chat (one reply from this engine; "
                                     "stream=True for chunks)")
        try:
            return parse_chat({"messages": messages, **{k: v for k, v in options.items() if v is not None}})
        except ApiError as exc:
            raise typed(exc) from None

    async def _start(self, req: ChatRequest) -> ChatRun:
        try:
            return (await serving_chat.start(req, self.model, SERVICE, SETTINGS))[1]
        except ApiError as exc:
            raise typed(exc) from None

    async def reply(self, req: ChatRequest) -> ChatReply:
        chat = await self._start(req)
        try:
            (choice,) = await collect(chat)
        finally:
            chat.close()
        assert choice.stats is not None
        return ChatReply(choice.content, choice.calls, choice.finish, Usage.of(choice.stats), choice.reasoning)

    async def chunks(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        chat = await self._start(req)
        try:
            async for update in chat.updates():
                if (chunk := _chunk(update)) is not None:
                    yield chunk
        except ApiError as exc:  # a tool call that cannot be read
            raise typed(exc) from None
        finally:
            chat.close()

    # -- blocking calls, on this engine's own loop --

    def blocking(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._thread().run(coroutine)

    def blocking_iterator(self, items: AsyncIterator[T]) -> Iterator[T]:
        return self._thread().iterate(items)

    def _thread(self) -> LoopThread:
        if self._loop is None:
            self._loop = LoopThread()
        return self._loop

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()


def _chunk(update: Update) -> ChatChunk | None:
    content, reasoning, calls = [], [], []
    for event in update.events:
        if isinstance(event, TextDelta):
            content.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, CallStart):
            calls.append(ToolCallDelta(event.index, event.id, event.name))
        elif isinstance(event, CallArguments):
            calls.append(ToolCallDelta(event.index, arguments=event.text))
    usage = Usage.of(update.stats) if update.stats is not None else None
    if not (content or reasoning or calls or update.finish):
        return None
    return ChatChunk("".join(content), "".join(reasoning), calls, update.finish, usage)
