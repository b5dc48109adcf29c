"""create_app(config): the Starlette app, its middleware stack and its lifespan."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from llamaserve.config import ServerConfig
from llamaserve.engine import Engine
from llamaserve.errors import EngineError
from llamaserve.hosting.host import ModelHost
from llamaserve.hosting.opening import Loader
from llamaserve.server import described, errors, openapi, playground
from llamaserve.server.auth import Authenticator, AuthMiddleware, client_ip, is_api_path
from llamaserve.server.body import BodyLimitMiddleware
from llamaserve.server.header_case import HeaderCaseMiddleware
from llamaserve.server.cors import cors_middleware
from llamaserve.server.families import FAMILIES
from llamaserve.server.generation import GenerationService
from llamaserve.server.metrics import MetricsMiddleware, ServerMetrics, metrics_endpoint
from llamaserve.server.ratelimit import FixedWindowLimiter, RateLimitMiddleware
from llamaserve.server.ratelimit_redis import RedisWindowLimiter
from llamaserve.server.sse import ClientGone
from llamaserve.server.tools.service import ToolService


@dataclass(frozen=True)
class ServerContext:
    """What handlers share; app.state.llamaserve holds it (the /v1 routes build on it too)."""
    config: ServerConfig
    host: ModelHost
    metrics: ServerMetrics
    service: GenerationService
    tools: ToolService  # llama-server's /tools (built-in tools, MCP servers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody reads it; it labels the request in metrics


def _rate_limiter(config: ServerConfig) -> FixedWindowLimiter | RedisWindowLimiter | None:
    """--rate-limit counted in this process, or in Redis with --rate-limit-redis."""
    if not config.rate_limit:
        return None
    if config.rate_limit_redis:
        return RedisWindowLimiter(config.rate_limit_redis, config.rate_limit, config.rate_limit_window,
                                  config.rate_limit_redis_fallback)
    return FixedWindowLimiter(config.rate_limit, config.rate_limit_window)


def create_app(config: ServerConfig | None = None, engine: Engine | None = None, *,
               loader: Loader | None = None) -> Starlette:
    """The app. Its lifespan loads the configured model (the default one when none is named)
    in the background unless `engine` is given (the app then never closes it), and on
    shutdown waits for in-flight requests before closing the engines it loaded."""
    config = config or ServerConfig()
    host = ModelHost(config, engine, loader)
    metrics = ServerMetrics(host, [family.metrics() for family in FAMILIES.all if family.metrics])
    tools = ToolService.from_config(config)  # a bad --mcp-servers-* is a ValueError naming the flag, here
    ctx = ServerContext(config, host, metrics, GenerationService(host, metrics, config), tools)

    limiter = _rate_limiter(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(host.start())
        try:
            await tools.start()  # the MCP servers' warmup: their tools are listed before the first request
            yield
        finally:
            await tools.stop()
            await asyncio.gather(loading, return_exceptions=True)
            await host.close(config.drain_timeout)
            if isinstance(limiter, RedisWindowLimiter):
                await limiter.aclose()

    routes = [
        *(playground.routes() if config.ui else ()),  # GET /
        Route("/metrics", metrics_endpoint(metrics, config.metrics), methods=["GET"]),
        *described.routes(openapi.document(described.OPENAPI_PATHS,
                                           *(family.openapi_paths for family in FAMILIES.all))),
        *(route for family in FAMILIES.all for route in family.routes(ctx.service.for_family(family))),
    ]

    middleware = [Middleware(HeaderCaseMiddleware), Middleware(MetricsMiddleware, metrics=metrics)]
    if (cors := cors_middleware(config.cors_origins)) is not None:
        middleware.append(cors)
    authenticator = Authenticator(config) if config.auth_enabled else None
    if limiter is not None:
        def identify(scope: Scope) -> str:
            if authenticator is not None:
                identity, _ = authenticator.authenticate(scope)
                if identity is not None:
                    return str(identity)
            return "ip:" + client_ip(scope)

        middleware.append(Middleware(
            RateLimitMiddleware, limiter=limiter, identify=identify, applies=is_api_path))
    if authenticator is not None:
        middleware.append(Middleware(AuthMiddleware, authenticator=authenticator))
    middleware.append(Middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes))

    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan,
        # EngineError (every typed engine error) and the domain errors of model hosting are
        # handled like ApiError, as answers, not as crashes; only unexpected exceptions reach
        # Exception (logged with traceback).
        exception_handlers={errors.ApiError: errors.handle, HTTPException: errors.handle,
                            EngineError: errors.handle, ClientGone: _client_gone,
                            ClientDisconnect: _client_gone,  # gone mid-body (or timed out by door.py)
                            **{kind: errors.handle for kind in errors.DOMAIN_ERRORS},
                            Exception: errors.handle})
    app.state.llamaserve = ctx
    app.state.families = FAMILIES  # whose error shape a path takes (errors.ErrorResponse)
    return app
