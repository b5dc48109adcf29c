"""Checks every family's protocol shares: JSON shapes, text fields, the model name. Each
refusal is a 400 whose message starts with the field as that API spells it."""
from __future__ import annotations

from typing import Any

from llamaserve.generation_params import check_text
from llamaserve.server.errors import invalid

MAX_NAME = 256
# Stop strings a client may send: fewer than the engine's 16, since a chat template adds its own.
MAX_STOP = 12


def text(name: str, value: Any, limit: int | None = None) -> str:
    value = check_text(name, value)
    if limit is not None and len(value) > limit:
        raise invalid(f"{name}: longer than {limit} characters")
    return value


def json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{name}: must be an object")
    return value


def json_array(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{name}: must be an array")
    return value


def model_name(values: dict[str, Any]) -> str | None:
    return text("model", values["model"], MAX_NAME) if "model" in values else None
