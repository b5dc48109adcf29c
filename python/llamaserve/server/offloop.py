"""Big JSON answers (tokenize with pieces, detokenize, embeddings of 2,048 inputs) built and
rendered in a thread, so the event loop and every stream on it go on meanwhile.

A thread alone is not enough: one json.dumps or tolist() of a million values holds the GIL
from start to end. Renderers here write their big lists one element (or row) at a time in
Python, so the interpreter hands the GIL back to the loop every few milliseconds."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

from starlette.responses import Response


def dumps(value: Any) -> str:
    """One JSON value as Starlette's JSONResponse writes it (compact, UTF-8, never NaN)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_list(parts: Iterable[str]) -> str:
    """A JSON array of already-written elements."""
    return "[" + ",".join(parts) + "]"


def write_object(fields: dict[str, str]) -> str:
    """A JSON object of already-written values."""
    return "{" + ",".join(f"{dumps(k)}:{v}" for k, v in fields.items()) + "}"


async def json_response(render: Callable[..., str], *args: Any) -> Response:
    """The answer `render(*args)` writes, rendered in a thread."""
    body = await asyncio.to_thread(lambda: render(*args).encode("utf-8"))
    return Response(body, media_type="application/json")
