"""llama-server's /cors-proxy?url=...: fetches an http(s) URL for a browser page that may not
(a web UI reaching a remote MCP server), with --ui-mcp-proxy only (else 403). It forwards the
method, the body and only the headers the caller names as x-llama-server-proxy-header-<name>;
the answer streams back with its status, type and body, bounded in size (and each read in time)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llamaserve.server import openapi
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.llamacpp.tools_router import disabled

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("llamaserve.server")

PROXY_HEADER = "x-llama-server-proxy-header-"
MAX_RESPONSE = 32 * 1024 * 1024  # bytes of the fetched answer
READ_TIMEOUT = 600.0  # seconds, as llama-server: 10 minutes to read
CONNECT_TIMEOUT = 30.0
PASSED_BACK = ("content-type", "cache-control", "mcp-session-id", "www-authenticate", "location")


def routes(enabled: bool) -> list[Route]:
    async def proxy(request: Request) -> Response:
        if not enabled:
            raise disabled("this feature is disabled: start the server with --ui-mcp-proxy")
        url = request.query_params.get("url")
        if not url:
            raise invalid("url: expected the URL to fetch, /cors-proxy?url=http://...")
        try:
            parts = urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            raise invalid("url: not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise invalid(f"url: unsupported URL scheme in target URL: {parts.scheme or '(none)'}")
        if not parts.hostname or not port_ok:
            raise invalid("url: invalid target URL: missing host")
        if parts.password is not None:
            raise invalid("url: authentication in target URL is not supported")
        headers = {k[len(PROXY_HEADER):]: v for k, v in request.headers.items()
                   if k.lower().startswith(PROXY_HEADER) and len(k) > len(PROXY_HEADER)}
        body = await request.body() if request.method == "POST" else None
        import httpx  # with its CLI's rich and pygments: loaded when the proxy is used, not by every server

        client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
                                   follow_redirects=False, trust_env=False)
        try:
            answer = await client.send(client.build_request(request.method, url, headers=headers, content=body),
                                       stream=True)
        except httpx.InvalidURL as exc:
            await client.aclose()
            raise invalid(f"url: invalid target URL: {exc}") from None
        except httpx.TimeoutException:
            await client.aclose()
            raise ApiError(504, "REQUEST_TIMEOUT", f"{parts.hostname} did not answer in time") from None
        except httpx.HTTPError as exc:
            await client.aclose()
            raise ApiError(502, "BAD_GATEWAY", f"cannot reach {parts.hostname}: {type(exc).__name__}") from None
        back = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
        if answer.headers.get("content-encoding"):
            back["content-encoding"] = answer.headers["content-encoding"]  # the raw bytes are passed on
        declared = answer.headers.get("content-length", "")
        if answer.status_code in (204, 304) or (declared.isdigit() and int(declared) > MAX_RESPONSE):
            await answer.aclose()
            await client.aclose()
            if answer.status_code in (204, 304):
                return Response(status_code=answer.status_code, headers=back)
            raise ApiError(502, "BAD_GATEWAY", f"the answer of {parts.hostname} is larger than {MAX_RESPONSE} bytes")
        return StreamingResponse(_relay(answer, client, parts.hostname), status_code=answer.status_code,
                                 headers=back)

    return [Route("/cors-proxy", proxy, methods=["GET", "POST"])]


async def _relay(answer: httpx.Response, client: httpx.AsyncClient, host: str) -> AsyncIterator[bytes]:
    """The fetched answer as it comes (an MCP server's event stream stays open), cut off past
    MAX_RESPONSE bytes; the connection is closed when it ends or the caller goes away."""
    sent = 0
    try:
        async for chunk in answer.aiter_raw():
            sent += len(chunk)
            if sent > MAX_RESPONSE:
                log.warning("/cors-proxy: the answer of %s passed %d bytes, cut off", host, MAX_RESPONSE)
                break
            yield chunk
    except httpx.HTTPError as exc:  # the site went away mid-answer: the answer ends there
        log.warning("/cors-proxy: the answer of %s broke off: %s", host, type(exc).__name__)
    finally:
        await answer.aclose()
        await client.aclose()


OPENAPI_PATHS = {
    "/cors-proxy": {method: openapi.operation(
        "Fetch ?url= for a browser page (--ui-mcp-proxy; else 403): the method, the body and the "
        "x-llama-server-proxy-header-* headers are forwarded", "llama-server endpoints",
        openapi.responses({200: {}}, (400, 401, 403, 429, 502, 504), error_schema="LlamaCppError"),
        parameters=[{"name": "url", "in": "query", "required": True, "schema": {"type": "string"}}],
        **({"body": {}, "body_required": False} if method == "post" else {}))
        for method in ("get", "post")},
}
