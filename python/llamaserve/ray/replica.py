"""LlamaServer: one Ray Serve replica = one engine host and the same Starlette app that
`llamaserve serve` runs (every endpoint, auth, rate limits, metrics).

The gateway (gateway.py) hands each HTTP request over as (ASGI scope, body); the app's ASGI
messages come back as a streaming response, coalesced into lists (a token per Ray object
would cost more than the token). A cancelled request (the client left: Serve cancels the
generator) shows the app an `http.disconnect` and cancels it, so its engine slot is freed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from starlette.types import Message

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app

log = logging.getLogger("ray.serve")

REPLICA_HEADER = b"x-llamaserve-replica"  # which replica served a response (routing is visible)


class LlamaServer:
    async def __init__(self, config: ServerConfig) -> None:
        self.app = create_app(config)
        self.host = self.app.state.llamaserve.host
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        # Ready only once the model is loaded: Serve sends no request to a replica before.
        while self.host.state == "loading":
            await asyncio.sleep(0.05)
        if self.host.current is None and self.host.state != "idle":
            raise RuntimeError(f"the model did not load: {self.host.error}")

    async def handle_http(self, scope: dict[str, Any], body: bytes,
                          prefix_keys: list[str] | None = None) -> AsyncIterator[list[Message]]:
        """Run one HTTP request through the app; yield its ASGI messages. `prefix_keys` is
        for the router (router.py), which reads it before the request gets here."""
        messages: asyncio.Queue[Message | None] = asyncio.Queue()
        gone = asyncio.Event()
        body_read = False

        async def receive() -> Message:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (REPLICA_HEADER, self.replica_id.encode())]
                message = {**message, "headers": headers}
            messages.put_nowait(message)

        app = asyncio.ensure_future(self.app(scope, receive, send))
        app.add_done_callback(lambda _: messages.put_nowait(None))
        try:
            while True:
                batch = [await messages.get()]
                while not messages.empty():
                    batch.append(messages.get_nowait())
                ended = batch[-1] is None
                if ended:
                    batch.pop()
                if batch:
                    yield batch
                if ended:
                    break
            await app  # the app answers its own errors; only a crash in it is raised here
        except BaseException:  # cancelled (the client left) or torn down: free the slot
            gone.set()
            app.cancel()
            await asyncio.gather(app, return_exceptions=True)
            raise

    def check_health(self) -> None:
        """Serve's health check (every few seconds): a model is loaded and its engine
        answers (or every model was unloaded on purpose). Raising marks the replica
        unhealthy: Serve replaces it."""
        model = self.host.current
        if model is None:
            if self.host.state != "idle":
                raise RuntimeError(f"no model loaded ({self.host.state}): {self.host.error or ''}")
            return
        model.engine.tokenize("health", add_special=False)  # a closed engine raises
        _ = model.engine.busy_slots

    async def __del__(self) -> None:
        # Serve calls this on a graceful stop: in-flight requests finish (drain_timeout).
        await self._lifespan.__aexit__(None, None, None)
