"""GET /: the playground, one page shipped in the package (inline CSS and JS, nothing fetched
from the network) that chats with the served models through /v1 from the server's own origin."""
from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE = files("llamaserve.server").joinpath("static/playground.html")


def routes() -> list[Route]:
    page = PAGE.read_text(encoding="utf-8")

    async def playground(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    return [Route("/", playground, methods=["GET"])]
