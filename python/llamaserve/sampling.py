"""Validation of generation arguments: every bad value becomes InvalidRequest naming it,
before anything reaches the native engine."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from llamaserve import _native
from llamaserve.errors import InvalidRequest

MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 512
MAX_TOP_LOGPROBS = 20
SEED_LIMIT = 2**32 - 1  # native "random seed" sentinel; real seeds stay below it

GENERATION_ARGUMENTS = frozenset({
    "max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
    "presence_penalty", "frequency_penalty", "penalty_last_n", "seed", "stop",
    "ignore_eos", "logit_bias", "grammar", "add_special", "parse_special", "logprobs", "cache_prompt",
})


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name}: must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidRequest(f"{name}: must be a finite number")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise InvalidRequest(f"{name}: must be in {bracket}{low:g}, {high:g}], got {value:g}")
    return value


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: must be an integer, got {type(value).__name__}")
    if value < low or value > high:
        raise InvalidRequest(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name}: must be true or false")
    return value


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, Sequence) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("stop: must be a string or a list of strings")
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"stop: at most {MAX_STOP_STRINGS} strings")
    for s in stops:
        if not s or len(s) > MAX_STOP_LENGTH:
            raise InvalidRequest(f"stop: each string must have 1 to {MAX_STOP_LENGTH} characters")
    return list(stops)


def _logit_bias(value: Any) -> list[tuple[int, float]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InvalidRequest("logit_bias: must map token ids to numbers")
    out = []
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidRequest(f"logit_bias: key {str(key)[:32]!r} is not a token id") from None
        if isinstance(bias, (int, float)) and not isinstance(bias, bool) and bias == -math.inf:
            out.append((token, -math.inf))
            continue
        out.append((token, _number("logit_bias", bias, -100.0, 100.0)))
    return out


def build(**arguments: Any) -> tuple[_native.SamplingParams, _native.GenerationOptions]:
    """Check every argument and return the native sampling and generation settings."""
    unknown = set(arguments) - GENERATION_ARGUMENTS
    if unknown:
        raise InvalidRequest(f"{sorted(unknown)[0]}: unknown generation argument")
    sampling = _native.SamplingParams()
    options = _native.GenerationOptions()
    a = {k: v for k, v in arguments.items() if v is not None}

    if "max_tokens" in a:
        options.max_tokens = _integer("max_tokens", a["max_tokens"], 1, 2**31 - 1)
    if "temperature" in a:
        sampling.temperature = _number("temperature", a["temperature"], 0.0, 100.0)
    if "top_k" in a:
        sampling.top_k = _integer("top_k", a["top_k"], 0, 2**31 - 1)
    if "top_p" in a:
        sampling.top_p = _number("top_p", a["top_p"], 0.0, 1.0, low_open=True)
    if "min_p" in a:
        sampling.min_p = _number("min_p", a["min_p"], 0.0, 1.0)
    if "repeat_penalty" in a:
        sampling.repeat_penalty = _number("repeat_penalty", a["repeat_penalty"], 0.0, 10.0, low_open=True)
    if "presence_penalty" in a:
        sampling.presence_penalty = _number("presence_penalty", a["presence_penalty"], -2.0, 2.0)
    if "frequency_penalty" in a:
        sampling.frequency_penalty = _number("frequency_penalty", a["frequency_penalty"], -2.0, 2.0)
    if "penalty_last_n" in a:
        sampling.penalty_last_n = _integer("penalty_last_n", a["penalty_last_n"], -1, 2**20)
    if "seed" in a:
        sampling.seed = _integer("seed", a["seed"], 0, SEED_LIMIT - 1)
    if "logprobs" in a:
        options.logprobs = _integer("logprobs", a["logprobs"], 0, MAX_TOP_LOGPROBS)
    if "grammar" in a:
        if not isinstance(a["grammar"], str):
            raise InvalidRequest("grammar: must be a GBNF string")
        sampling.grammar = a["grammar"]
    sampling.logit_bias = _logit_bias(a.get("logit_bias"))
    options.stop = _stops(a.get("stop"))
    for flag in ("ignore_eos", "add_special", "parse_special", "cache_prompt"):
        if flag in a:
            setattr(options, flag, _bool(flag, a[flag]))
    return sampling, options
