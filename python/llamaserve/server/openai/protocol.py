"""Request types of the OpenAI-compatible /v1 API that every endpoint shares, and the
completions request.

Every refusal is a 400 whose message starts with the bad parameter (`messages[1].role: ...`);
the /v1 error renderer turns that prefix into OpenAI's `param` field. Generation parameters
are OpenAI's names for the one request model's (llamaserve.generation_params), which checks
them; parameters OpenAI clients send by default (user, store, metadata, stream_options, ...)
are accepted and ignored; any other unknown parameter is refused by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamaserve.generation_params import (
    MAX_TOP_LOGPROBS, PARAMETERS, PROMPT_SCHEMA, check_bool, check_integer, check_prompts, properties_schema,
    validate)
from llamaserve.server.chat.request import Sampling
from llamaserve.server.protocol_values import MAX_NAME, MAX_STOP, json_object, model_name
from llamaserve.server.errors import invalid

MAX_N = 16
MAX_PROMPTS = 64

# Sent by OpenAI SDKs and LangChain, meaningless here: accepted and ignored.
IGNORED = frozenset({"user", "store", "metadata", "service_tier",
                     "safety_identifier", "prompt_cache_key", "stream_options"})
# OpenAI's names that are the request model's own, and llama.cpp-style extensions.
GENERATION_PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
                         "frequency_penalty", "logit_bias", "top_k", "min_p", "repeat_penalty",
                         "penalty_last_n", "ignore_eos", "cache_prompt", "speculative", "prediction", "grammar",
                         "post_sampling_probs", "id_slot")
SAMPLING_PARAMETERS = frozenset({*GENERATION_PARAMETERS, "n", "stream"})
COMPLETION_PARAMETERS = SAMPLING_PARAMETERS | {"model", "prompt", "logprobs", "echo", "best_of", "suffix"}


SAMPLING_SCHEMA: dict[str, Any] = {
    **properties_schema(GENERATION_PARAMETERS),
    "stop": {"oneOf": [PARAMETERS["stop"].schema["oneOf"][0],
                       {**PARAMETERS["stop"].schema["oneOf"][1], "maxItems": MAX_STOP}]},
    "n": {"type": "integer", "minimum": 1, "maximum": MAX_N},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "model": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
    "user": {"type": "string"},
}
COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["prompt"], "additionalProperties": False,
    "properties": {**SAMPLING_SCHEMA,
                   "prompt": {"oneOf": [PROMPT_SCHEMA["oneOf"][0], PROMPT_SCHEMA["oneOf"][1],
                                        {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS,
                                         "items": {"type": "string", "minLength": 1}}]},
                   "logprobs": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_LOGPROBS},
                   "echo": {"type": "boolean"}}}


def present(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The body without nulls (null = absent) and ignored parameters; unknown ones refused."""
    values = {}
    for key, value in body.items():
        if key in IGNORED:
            continue
        if key not in allowed:
            if value is None:
                continue
            raise invalid(f"{str(key)[:64]}: unsupported parameter")
        if value is not None:
            values[key] = value
    return values


def sampling(values: dict[str, Any], body: dict[str, Any]) -> Sampling:
    arguments = validate({name: values[name] for name in GENERATION_PARAMETERS if name in values})
    if len(arguments.get("stop", ())) > MAX_STOP:
        raise invalid(f"stop: at most {MAX_STOP} strings")
    n = check_integer("n", values.get("n", 1), 1, MAX_N)
    stream = check_bool("stream", values.get("stream", False))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        options = json_object("stream_options", options)
        if options.get("include_usage") is not None:
            include_usage = check_bool("stream_options.include_usage", options["include_usage"])
    return Sampling(arguments, n, stream, include_usage and stream)


# -- completions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompts: list[str | list[int]]
    sampling: Sampling
    logprobs: int | None = None  # top alternatives per token; None = off
    echo: bool = False


def parse_completion(body: Any) -> CompletionRequest:
    body = json_object("body", body)
    values = present(body, COMPLETION_PARAMETERS)
    if "prompt" not in values:
        raise invalid("prompt: required")
    prompts = check_prompts("prompt", values["prompt"], MAX_PROMPTS)
    sampling_ = sampling(values, body)
    if "best_of" in values and check_integer("best_of", values["best_of"], 1, MAX_N) != sampling_.n:
        raise invalid("best_of: only best_of equal to n is supported")
    if values.get("suffix"):
        raise invalid("suffix: not supported")
    logprobs = check_integer("logprobs", values["logprobs"], 0, MAX_TOP_LOGPROBS) if "logprobs" in values else None
    echo = check_bool("echo", values.get("echo", False))
    if len(prompts) * sampling_.n > MAX_N * 4:
        raise invalid(f"n: at most {MAX_N * 4} choices in one request (prompts times n)")
    return CompletionRequest(model_name(values), prompts, sampling_, logprobs, echo)
