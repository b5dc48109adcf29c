"""Server-sent events, and watching for a client that goes away.

A generation must stop as soon as its client disconnects, even before the first token (a
long prefill sends nothing). So the ASGI receive channel is watched while the work runs, and
the work is cancelled when `http.disconnect` arrives; its cleanup cancels the engine stream.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the work finished."""


def event(data: Any) -> bytes:
    """One SSE event; never NaN on the wire (allow_nan=False)."""
    return b"data: " + json.dumps(data, ensure_ascii=False, allow_nan=False).encode() + b"\n\n"


TEXT_HOLE = "\ue000text\ue000"  # marks where TextEvents puts each chunk's text


class TextEvents:
    """Events of one shape in which only a text field changes from chunk to chunk (a
    streamed token): the JSON around it is encoded once, each chunk encodes its text."""

    def __init__(self, shape: Any) -> None:
        """`shape`: the event's JSON value, holding TEXT_HOLE exactly once."""
        self.head, self.tail = event(shape).split(json.dumps(TEXT_HOLE, ensure_ascii=False).encode())

    def __call__(self, text: str) -> bytes:
        return self.head + json.dumps(text, ensure_ascii=False).encode() + self.tail


class ChoiceTextEvents:
    """TextEvents for each choice of one response, each made on its first use from
    `shape_of(choice index)`."""

    def __init__(self, shape_of: Callable[[int], Any]) -> None:
        self.shape_of = shape_of
        self.by_choice: dict[int, TextEvents] = {}

    def __call__(self, choice: int, text: str) -> bytes:
        events = self.by_choice.get(choice)
        if events is None:
            events = self.by_choice[choice] = TextEvents(self.shape_of(choice))
        return events(text)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """Run `work`; if the client disconnects first, cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # we were cancelled ourselves (shutdown): take the work down too
        watcher.cancel()
        task.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
        raise
    watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


PING = b": ping\n\n"  # an SSE comment: every client skips it, and the connection is not idle


def _ping_interval(scope: Scope) -> float:
    """The server's --sse-ping, from the app that serves this request."""
    app = scope.get("app")
    context = getattr(getattr(app, "state", None), "llamaserve", None)
    return context.config.sse_ping if context is not None else 0.0


class _Pinger:
    """Sends PING whenever a stream has been silent for `every` seconds (a request queued or
    prefilling), so that proxies do not cut it; a lock keeps its writes apart from the
    stream's own."""

    def __init__(self, send: Send, every: float) -> None:
        self._send = send
        self.every = every
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.task = asyncio.ensure_future(self._run())

    async def send(self, chunk: bytes) -> None:
        async with self.lock:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.last = self.loop.time()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.last + self.every - self.loop.time()))
            if self.loop.time() - self.last >= self.every:
                await self.send(PING)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class EventStreamResponse:
    """An ASGI response that sends each chunk of `events` as soon as it is produced, and
    cancels the producer when the client disconnects."""

    media_type = "text/event-stream"
    content_type = b"text/event-stream; charset=utf-8"
    pings = True  # SSE comments while a stream is silent (--sse-ping)

    def __init__(self, events: AsyncIterator[bytes], status_code: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.events = events
        self.status_code = status_code
        self.headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}

    async def _send_all(self, send: Send, ping_every: float) -> None:
        if ping_every <= 0:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            pings = _Pinger(send, ping_every)
            try:
                async for chunk in self.events:
                    await pings.send(chunk)
            finally:
                await pings.stop()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", self.content_type)]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
            await until_disconnect(self._send_all(send, _ping_interval(scope) if self.pings else 0.0), receive)
        except (ClientGone, OSError):
            pass  # the producer was cancelled; its cleanup released the engine stream
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
