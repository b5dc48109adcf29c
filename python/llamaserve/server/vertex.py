"""Vertex AI's prediction protocol for custom containers, as llama-server speaks it: with
AIP_MODE=PREDICTION in the environment, POST AIP_PREDICT_ROUTE (default /predict) takes
{"instances": [...]}, each naming the route it is for in `@requestFormat` (a path, or its
camelCase name: chatCompletions is /v1/chat/completions), and answers {"predictions": [...]}
in order, each the route's own answer (or its error); AIP_HEALTH_ROUTE answers as /health;
AIP_HTTP_PORT replaces --port. Each instance goes through the whole app (auth, limits,
families) as a request of its own."""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llamaserve.server.body import read_json
from llamaserve.server.errors import invalid
from llamaserve.server.family import ApiFamily
from llamaserve.server.llamacpp.errors import llamacpp_body, stream_error
from llamaserve.server.protocol_values import json_array, json_object

if TYPE_CHECKING:
    import httpx

MAX_INSTANCES = 128
PREDICT_ROUTE = os.environ.get("AIP_PREDICT_ROUTE", "/predict")  # the family's one path, read at start
FORWARDED = ("authorization", "x-api-key")  # who the instances are from: the predict request's caller


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("AIP_MODE") == "PREDICTION"


def port(configured: int, environ: Mapping[str, str] = os.environ) -> int:
    """--port, unless Vertex AI names the port."""
    return int(environ.get("AIP_HTTP_PORT", configured)) if enabled(environ) else configured


def format_name(path: str) -> str:
    """A route's camelCase name: /v1/chat/completions -> chatCompletions, /apply-template -> applyTemplate."""
    words = [w for w in re.split(r"[/_-]", path.removeprefix("/v1").split("{", 1)[0]) if w]
    return "".join(w if i == 0 else w[:1].upper() + w[1:] for i, w in enumerate(words))


def _formats(app_routes: Sequence[BaseRoute]) -> dict[str, str]:
    """@requestFormat -> path, for the app's POST routes (by path too)."""
    posts = [r.path for r in app_routes if isinstance(r, Route) and "POST" in (r.methods or ()) and "{" not in r.path]
    by_format: dict[str, str] = {}
    for path in posts:
        by_format.setdefault(format_name(path), path)  # the first registration wins, as llama-server's
    by_format.update({path: path for path in posts})
    return by_format


def routes(service: Any) -> list[Route]:
    """The predict route and the health alias; none unless enabled (read when the app is made)."""
    if not enabled():
        return []

    async def predict(request: Request) -> Response:
        body = json_object("body", await read_json(request))
        instances = json_array("instances", body.get("instances"))
        if len(instances) > MAX_INSTANCES:
            raise invalid(f"instances: at most {MAX_INSTANCES}")
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        by_format = _formats(request.app.routes)
        async with _in_process(request.app, timeout=None) as client:
            answers = await asyncio.gather(*(_one(client, by_format, headers, i, instance)
                                             for i, instance in enumerate(instances)))
        return JSONResponse({"predictions": answers})

    async def health(request: Request) -> Response:
        async with _in_process(request.app) as c:
            reply = await c.get("/health")
        return Response(reply.content, reply.status_code, media_type=reply.headers.get("content-type"))

    out = [Route(PREDICT_ROUTE, predict, methods=["POST"])]
    if os.environ.get("AIP_HEALTH_ROUTE"):
        out.append(Route(os.environ["AIP_HEALTH_ROUTE"], health, methods=["GET"]))
    return out


def _in_process(app: Any, **options: Any) -> httpx.AsyncClient:
    """A client that calls this app's own routes in-process."""
    import httpx  # loaded on Vertex AI only: with its command line's rich and pygments, it is no small import

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vertex", **options)


async def _one(client: httpx.AsyncClient, by_format: dict[str, str], headers: dict[str, str], i: int,
               instance: Any) -> Any:
    if not isinstance(instance, dict) or not isinstance(instance.get("@requestFormat"), str):
        return {"error": {"code": 400, "type": "invalid_request_error",
                          "message": f"instances[{i}]: must be an object with a string @requestFormat"}}
    payload = {k: v for k, v in instance.items() if k != "@requestFormat"}
    path = by_format.get(instance["@requestFormat"])
    if path is None:
        return {"error": {"code": 400, "type": "invalid_request_error",
                          "message": f"instances[{i}].@requestFormat: no route {instance['@requestFormat'][:64]!r}"}}
    if "stream" in payload:
        payload["stream"] = False  # one answer per instance: the predict route does not stream
    reply = await client.post(path, json=payload, headers=headers)
    try:
        return reply.json()
    except ValueError:
        return reply.text


# A family of its own: its path is guarded by API keys and rate limits, its errors in
# llama-server's shape (whose protocol this is).
FAMILY = ApiFamily("vertex", (PREDICT_ROUTE,), routes, {}, llamacpp_body, stream_error)
