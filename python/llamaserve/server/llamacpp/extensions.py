"""llama-server's own request fields, which its clients send to /completion and to the OpenAI
routes alike: one table of what each becomes here. A field is renamed onto the one request
model (so the one validator of that parameter checks it), honoured by the response (what it
reports), accepted without effect, or refused by name unless left at its neutral value."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llamaserve.generation_params import check_bool
from llamaserve.json_grammar import SchemaError, schema_to_grammar
from llamaserve.server.errors import invalid
from llamaserve.server.llamacpp.reports import Reports
from llamaserve.server.protocol_values import json_object

# llama-server's name -> the request model's
RENAMED = {"n_predict": "max_tokens", "repeat_last_n": "penalty_last_n"}
# What the answer reports (reports.py).
REPORTS = ("verbose", "timings_per_token", "return_progress")
# Accepted without effect: the prompt is never shifted, and the answer's fields are always all there.
NO_EFFECT = ("n_keep", "n_indent", "response_fields", "n_cmpl",
             "t_max_prompt_ms", "n_discard", "backend_sampling")
# Samplers llamaserve does not run: refused unless neutral.
NEUTRAL = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "dynatemp_range": 0.0, "xtc_probability": 0.0,
           "dry_multiplier": 0.0, "t_max_predict_ms": 0, "lora": [], "top_n_sigma": -1.0}
# Settings of those samplers: without effect while the sampler is off.
NEUTRAL_ANY = ("mirostat_tau", "mirostat_eta", "dynatemp_exponent", "xtc_threshold", "dry_base",
               "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers", "samplers", "min_keep")
UNLIMITED = -1  # n_predict: until the end of the context

SCHEMA: dict[str, Any] = {
    "n_predict": {"type": "integer", "minimum": -1, "description": "the most tokens to generate (-1: to the end "
                                                                   "of the context)"},
    "repeat_last_n": {"type": "integer", "description": "how many last tokens the repeat penalty looks at"},
    "json_schema": {"type": "object", "description": "a JSON schema the text must follow"},
    "n_probs": {"type": "integer", "minimum": 0, "description": "the most likely alternatives per token"},
    **{name: {"type": "boolean", "description": "llama-server's: " + why} for name, why in (
        ("verbose", "the answer carries __verbose (the prompt as the template made it)"),
        ("timings_per_token", "every streamed chunk carries timings"),
        ("return_progress", "streamed: chunks with prompt_progress (total, cache, processed, time_ms) as the "
                            "prompt is processed"))},
}


@dataclass(frozen=True)
class Translated:
    body: dict[str, Any]  # OpenAI's names only
    reports: Reports
    n_probs: int | None  # the alternatives per token asked for by llama-server's name


def translate(body: Any, keep: frozenset[str] = frozenset(), verbose: bool = False) -> Translated:
    """`body` with llama-server's fields turned into the request model's names; `keep`: fields
    the route itself reads (left as they are); `verbose`: the server's --verbose, what a request
    that does not say gets. OpenAI's own name wins where both are sent."""
    out: dict[str, Any] = {}
    reports: dict[str, bool] = {}
    n_probs = schema = None
    unlimited = False
    for name, value in json_object("body", body).items():
        if value is None or name in keep:
            out[name] = value
        elif name == "n_predict" and value == UNLIMITED:
            unlimited = True  # OpenAI's max_tokens has no such value: it stays refused
        elif name in RENAMED:
            out.setdefault(RENAMED[name], value)  # OpenAI's own name, also sent, wins
        elif name in REPORTS:
            reports[name] = check_bool(name, value)
        elif name in NEUTRAL:
            if value != NEUTRAL[name]:
                raise invalid(f"{name}: not supported by llamaserve (leave it at {json.dumps(NEUTRAL[name])})")
        elif name == "json_schema":
            schema = value
        elif name == "n_probs":
            n_probs = value
        elif name not in (*NO_EFFECT, *NEUTRAL_ANY):
            out[name] = value  # the route's own parser says whether it knows it
    unlimited = unlimited and "max_tokens" not in out
    if schema is not None:
        if out.get("grammar") is not None:
            raise invalid("json_schema: cannot be combined with grammar")
        out["grammar"] = schema_grammar(schema)
    return Translated(out, Reports(reports.get("verbose", verbose), reports.get("timings_per_token", False),
                                   unlimited, reports.get("return_progress", False)), n_probs)


def schema_grammar(schema: Any) -> str:
    try:
        return schema_to_grammar(json_object("json_schema", schema))
    except SchemaError as exc:
        raise invalid(f"json_schema: {exc}") from None


def chat_logprobs(translated: Translated) -> dict[str, Any]:
    """The chat body with n_probs as OpenAI's logprobs and top_logprobs (OpenAI's win)."""
    body = dict(translated.body)
    if translated.n_probs:
        body.setdefault("logprobs", True)
        body.setdefault("top_logprobs", translated.n_probs)
    return body


def completion_logprobs(translated: Translated) -> dict[str, Any]:
    """The completion body with n_probs as OpenAI's logprobs (OpenAI's wins)."""
    body = dict(translated.body)
    if translated.n_probs:
        body.setdefault("logprobs", translated.n_probs)
    return body
