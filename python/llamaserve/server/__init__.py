"""The HTTP server: a Starlette app over the engine (native /api/v1, health, metrics)."""
from llamaserve.server.app import create_app

__all__ = ["create_app"]
