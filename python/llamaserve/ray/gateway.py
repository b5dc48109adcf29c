"""Gateway: the application's HTTP ingress, a light replica (no engine, no CPU reserved).

Serve's proxy hands an ingress replica the request's scope and streams its body in later, so
a request router at the proxy never sees the prompt. The gateway reads the body, computes
its prefix keys (affinity.py) and calls the engine replicas' `handle_http` through a
deployment handle, whose request router (router.py) picks the replica; the replica's ASGI
messages stream back unchanged (SSE included). A client that leaves cancels the call, which
cancels the replica's generator and frees its engine slot. A replica that dies before it
answered gets the request sent once more, to another; after, the client gets a clean error
(failures.py).
"""
from __future__ import annotations

import asyncio
import logging

from ray import exceptions as ray_exceptions
from ray.serve.handle import DeploymentHandle
from starlette.types import Message, Receive, Scope, Send

from llamaserve.config import ServerConfig
from llamaserve.ray.affinity import prefix_keys
from llamaserve.ray.failures import internal_error, replica_failed, send_failure

log = logging.getLogger("ray.serve")

ATTEMPTS = 2  # a request whose replica died before answering is sent once more

# The parts of an ASGI scope the app reads; the rest (Serve's own state) stays here.
SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
              "query_string", "root_path", "headers", "client", "server")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, at most `limit` bytes of it (the replica's body limit answers 413
    for what is over); None when the client left first."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size <= limit:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Gateway:
    """The ingress deployment; its ASGI app is a GatewayApp over the engine replicas' handle."""

    def __init__(self, servers: DeploymentHandle, config: ServerConfig) -> None:
        self.gateway_app = GatewayApp(servers, config)

    def __serve_build_asgi_app__(self) -> GatewayApp:
        return self.gateway_app


class GatewayApp:
    def __init__(self, servers: DeploymentHandle, config: ServerConfig) -> None:
        self.servers = servers.options(method_name="handle_http", stream=True)
        self.body_limit = config.max_body_bytes
        self.affinity = config.prefix_affinity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # no websockets in this API
            return
        body = await read_body(receive, self.body_limit + 1)
        if body is None:
            return
        keys = prefix_keys(scope["path"], body) if self.affinity else []
        portable = {k: scope[k] for k in SCOPE_KEYS if k in scope}
        for attempt in range(1, ATTEMPTS + 1):
            started = streaming = False
            responses = self.servers.remote(portable, body, prefix_keys=keys)
            try:
                async for batch in responses:
                    for message in batch:
                        if message["type"] == "http.response.start":
                            started = True
                            streaming = _is_event_stream(message)
                        await send(message)
                return
            except asyncio.CancelledError:  # the client left: so does the replica's request
                responses.cancel()
                raise
            except ray_exceptions.RayActorError:  # the replica died (or is unreachable)
                log.warning("a replica failed during %s %s (attempt %d)", scope["method"], scope["path"], attempt)
                if started or attempt == ATTEMPTS:
                    await send_failure(scope, send, replica_failed(), started, streaming)
                    return
                # Nothing reached the client yet: another replica takes the request.
            except ray_exceptions.RayTaskError as exc:  # the app crashed (it answers its own errors)
                log.error("replica error: %s", exc)
                await send_failure(scope, send, internal_error(), started, streaming)
                return


def _is_event_stream(start: Message) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"text/event-stream")
               for name, value in start.get("headers", []))
