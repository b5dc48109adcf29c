"""llama-server's /completion request: its own field names mapped onto the OpenAI completion
request through the table of llama-server's fields (extensions.py), and what only this route
has: prompts with {"prompt_string"} objects, logit_bias keyed by text, return_tokens."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llamaserve.generation_params import check_bool
from llamaserve.server.errors import invalid
from llamaserve.server.llamacpp import extensions
from llamaserve.server.openai.protocol import COMPLETION_SCHEMA as OPENAI_COMPLETION_SCHEMA
from llamaserve.server.openai.protocol import CompletionRequest, parse_completion
from llamaserve.server.protocol_values import json_array, json_object, model_name, text

COMPLETION_PROPERTIES = OPENAI_COMPLETION_SCHEMA["properties"]
OWN = ("prompt", "return_tokens", "response_fields")  # what this route reads itself

COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["prompt"],
    "properties": {**{name: value for name, value in COMPLETION_PROPERTIES.items() if name != "echo"},
                   **extensions.SCHEMA,
                   "return_tokens": {"type": "boolean", "description": "each result's token ids"},
                   "response_fields": {"type": "array", "items": {"type": "string"},
                                       "description": "only these fields of the answer (a/b: b inside a)"}}}


@dataclass(frozen=True)
class LlamaCompletion:
    request: CompletionRequest
    return_tokens: bool
    reports: extensions.Reports
    fields: tuple[str, ...]  # response_fields: only these in the answer (empty: all)


def model_of(body: Any) -> str | None:
    """The model a request names (leased before the rest is read: texts in it are tokenized)."""
    return model_name({k: v for k, v in json_object("body", body).items() if v is not None})


def parse(body: Any, tokenize: Callable[[str], list[int]], verbose: bool = False) -> LlamaCompletion:
    """`tokenize`: the leased model's, for logit_bias keyed by text (each of its tokens biased);
    `verbose`: the server's --verbose."""
    translated = extensions.translate(body, keep=frozenset(OWN), verbose=verbose)
    openai = {k: v for k, v in translated.body.items() if v is not None}
    if isinstance(openai.get("seed"), int) and openai["seed"] < 0:
        del openai["seed"]  # llama-server's -1: a random seed
    if openai.get("echo"):
        raise invalid("echo: not supported by /completion (its answer's prompt field holds the prompt)")
    if "prompt" not in openai:
        raise invalid("prompt: required")
    openai["prompt"] = _prompt(openai["prompt"], tokenize)
    return_tokens = check_bool("return_tokens", openai.pop("return_tokens", False))
    fields = tuple(text(f"response_fields[{i}]", f, 256)
                   for i, f in enumerate(json_array("response_fields", openai.pop("response_fields", []))))
    if translated.n_probs:
        openai.setdefault("logprobs", translated.n_probs)
    elif return_tokens:
        openai["logprobs"] = 0  # the chosen tokens' ids come with their log-probabilities
    if "logit_bias" in openai:
        openai["logit_bias"] = _logit_bias(openai["logit_bias"], tokenize)
    return LlamaCompletion(parse_completion(openai), return_tokens, translated.reports, fields)


def _prompt(value: Any, tokenize: Callable[[str], list[int]]) -> Any:
    """llama-server's prompts: OpenAI's forms, {"prompt_string": ...} objects alone or among them,
    and one prompt of token ids with texts among them (each text tokenized in its place)."""
    if isinstance(value, dict):
        return _prompt_string("prompt", value)
    if not isinstance(value, list):
        return value
    if any(isinstance(item, int) for item in value) and any(isinstance(item, str) for item in value):
        return [token for item in value for token in (tokenize(item) if isinstance(item, str) else [item])]
    return [_prompt_string(f"prompt[{i}]", item) if isinstance(item, dict) else item for i, item in enumerate(value)]


def _prompt_string(name: str, item: dict[str, Any]) -> str:
    if item.get("multimodal_data"):
        raise invalid(f"{name}.multimodal_data: images and audio are not supported (text models only)")
    text = item.get("prompt_string")
    if not isinstance(text, str):
        raise invalid(f"{name}.prompt_string: must be a string")
    return text


def _logit_bias(value: Any, tokenize: Callable[[str], list[int]]) -> Any:
    """llama-server's forms: [[token or text, bias], ...] or {token or text: bias}; a text's every
    token gets its bias (false: banned). Token ids stay for the one validator of logit_bias."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, list):
        return value  # the validator says what is wrong
    out: dict[Any, Any] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise invalid("logit_bias: each entry must be [token or text, bias]")
        key, bias = pair
        bias = -math.inf if bias is False else bias
        if isinstance(key, str) and not key.strip().isdigit():
            out.update({token: bias for token in tokenize(key)})
        else:
            out[key] = bias
    return out
