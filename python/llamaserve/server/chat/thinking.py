"""What a request asks of a reasoning model, however its API spells it, and how that reaches
the chat template and the engine.

| API | asks | thinking | budget (tokens) |
|---|---|---|---|
| chat completions | `reasoning_effort`: none, minimal / low / medium / high | off / on / on / on | - / 1024 / 4096 / none |
| Responses | `reasoning.effort`: the same values | the same | the same |
| Anthropic | `thinking: {"type": "enabled", "budget_tokens": N}` / `{"type": "disabled"}` | on / off | N / - |
| any | `chat_template_kwargs: {"enable_thinking": false, ...}` | what the template reads | - |

Thinking on or off is the template's switch: `enable_thinking` (Qwen3, SmolLM3, GLM, Granite,
Nemotron, ...) and `thinking` (DeepSeek V3.1 and later), both set; `reasoning_effort` is passed
as well (gpt-oss and others read it). chat_template_kwargs the request sends win over these
and over the server's --chat-template-kwargs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llamaserve.server.errors import invalid

EFFORT_BUDGETS: dict[str, int | None] = {"none": 0, "minimal": 0, "low": 1024, "medium": 4096, "high": None}
# What a template gets from the server itself: a request may not set these.
RESERVED_KWARGS = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})
MAX_KWARGS_CHARS = 64 * 1024


@dataclass(frozen=True)
class Thinking:
    enabled: bool | None = None  # None: the template's default
    budget: int | None = None  # most reasoning tokens; None: no limit
    effort: str | None = None  # low | medium | high, for templates that read reasoning_effort

    def template_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.enabled is not None:
            kwargs["enable_thinking"] = kwargs["thinking"] = self.enabled
        if self.effort in ("low", "medium", "high"):
            kwargs["reasoning_effort"] = self.effort
        return kwargs


def from_effort(name: str, value: Any) -> Thinking:
    if value not in EFFORT_BUDGETS:
        raise invalid(f"{name}: must be one of {', '.join(EFFORT_BUDGETS)}")
    budget = EFFORT_BUDGETS[value]
    return Thinking(enabled=budget != 0, budget=budget or None, effort=value)


def template_kwargs(name: str, value: Any) -> dict[str, Any]:
    """A request's (or the server's) chat_template_kwargs: a JSON object of bounded size whose
    keys are not the server's own."""
    if not isinstance(value, dict):
        raise invalid(f"{name}: must be an object")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise invalid(f"{name}: {str(key)[:64]!r} is not a template variable name")
        if key in RESERVED_KWARGS:
            raise invalid(f"{name}.{key}: set by the server, not by a request")
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        raise invalid(f"{name}: must be JSON values") from None
    if size > MAX_KWARGS_CHARS:
        raise invalid(f"{name}: longer than {MAX_KWARGS_CHARS} characters")
    return value
