"""Response header names in their usual capitalization (Content-Type, Access-Control-Allow-Origin).

Starlette keeps header names in lower case, which HTTP allows; but clients that read headers
through a plain dict (llama.cpp's own server tests among them) look them up as llama-server
writes them. uvicorn's h11 protocol (see door.py) writes names as the app gives them. Pure ASGI:
a streamed body passes through untouched."""
from __future__ import annotations

from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@lru_cache(maxsize=512)
def capitalized(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


class HeaderCaseMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_capitalized(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(capitalized(bytes(name)), value) for name, value in message.get("headers", ())]
            await send(message)

        await self.app(scope, receive, send_capitalized)
