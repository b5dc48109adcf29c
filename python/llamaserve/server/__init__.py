"""The HTTP server: a Starlette app over the engine (native /api/v1, health, metrics).

`create_app` is imported on first use, so that the pure parts of the server package (the
chat pipeline's parsers and templates) import without the whole app."""
from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from llamaserve.server.app import create_app

        return create_app
    raise AttributeError(name)
