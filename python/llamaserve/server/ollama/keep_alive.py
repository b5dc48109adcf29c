"""Ollama's keep_alive: how long a model stays loaded after a request, as seconds. A number is
seconds; a string is a Go duration ("5m", "1h30m", "300ms") or a number of seconds; a negative
value keeps the model loaded for good (infinity); 0 unloads it once the request is done."""
from __future__ import annotations

import math
import re
from typing import Any

from llamaserve.server.errors import invalid

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


def keep_alive_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid('keep_alive: must be a duration such as "5m" or a number of seconds')
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = float(body)
        except ValueError:
            if not _DURATION.fullmatch(body):
                raise invalid(f'keep_alive: {value[:32]!r} is not a duration such as "5m", "1h30m" or "300s"') \
                    from None
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(body))
        value = sign * seconds
    if not math.isfinite(value):
        raise invalid("keep_alive: must be finite")
    return math.inf if value < 0 else float(value)
