"""The server describing itself: GET /openapi.json and GET /docs (a page shipped in the
package that renders the description; nothing is fetched from the network)."""
from __future__ import annotations

from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from llamaserve.server import openapi

DOCS_PAGE = files("llamaserve.server").joinpath("static/docs.html")
OPENAPI_PATHS = {
    "/metrics": {"get": openapi.operation(
        "Prometheus metrics", "server",
        {"200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
}


def routes(document: dict[str, Any]) -> list[Route]:
    page = DOCS_PAGE.read_text(encoding="utf-8")

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    return [Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs, methods=["GET"])]
