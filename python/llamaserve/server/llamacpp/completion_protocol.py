"""llama-server's /completion request: its own field names mapped onto the OpenAI completion
request (so each value is checked by the one validator of its field), and what only this route
has. Fields llama-server takes that llamaserve does not honour are refused by name unless left
at their neutral value; a few that change nothing here are accepted (listed in README)."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llamaserve.json_grammar import SchemaError, schema_to_grammar
from llamaserve.server.errors import invalid
from llamaserve.server.openai.protocol import COMPLETION_SCHEMA as OPENAI_COMPLETION_SCHEMA
from llamaserve.server.openai.protocol import CompletionRequest, parse_completion
from llamaserve.server.protocol_values import json_object, model_name

COMPLETION_PROPERTIES = OPENAI_COMPLETION_SCHEMA["properties"]
# llama-server's name -> the OpenAI completion request's
RENAMED = {"n_predict": "max_tokens", "repeat_last_n": "penalty_last_n", "n_probs": "logprobs"}
SAME = ("prompt", "temperature", "top_k", "top_p", "min_p", "seed", "stop", "stream", "presence_penalty",
        "frequency_penalty", "repeat_penalty", "ignore_eos", "logit_bias", "grammar", "cache_prompt", "model")
# Accepted without effect: slots are chosen by prefix here, the prompt is never shifted, and
# every response carries timings and the settings used.
NO_EFFECT = ("id_slot", "n_keep", "n_indent", "timings_per_token", "return_progress", "response_fields",
             "post_sampling_probs", "n_cmpl", "verbose")
# Samplers llamaserve does not run: refused unless neutral.
NEUTRAL = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "dynatemp_range": 0.0, "xtc_probability": 0.0,
           "dry_multiplier": 0.0, "t_max_predict_ms": 0, "lora": [], "top_n_sigma": -1.0}
NEUTRAL_ANY = ("mirostat_tau", "mirostat_eta", "dynatemp_exponent", "xtc_threshold", "dry_base",
               "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers", "samplers", "min_keep")


COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["prompt"],
    "properties": {**{name: COMPLETION_PROPERTIES[name] for name in SAME if name in COMPLETION_PROPERTIES},
                   "n_predict": {**COMPLETION_PROPERTIES["max_tokens"],
                                 "description": "the most tokens to generate (-1: to the end of the context)"},
                   "repeat_last_n": {**COMPLETION_PROPERTIES["penalty_last_n"],
                                     "description": "how many last tokens the repeat penalty looks at"},
                   "n_probs": {**COMPLETION_PROPERTIES["logprobs"],
                               "description": "the most likely alternatives (and their log-probabilities) per token"},
                   "json_schema": {"type": "object", "description": "a JSON schema the text must follow"},
                   "return_tokens": {"type": "boolean", "description": "each result's token ids"}}}


@dataclass(frozen=True)
class LlamaCompletion:
    request: CompletionRequest
    return_tokens: bool
    unlimited: bool  # n_predict -1: until the end of the context


def model_of(body: Any) -> str | None:
    """The model a request names (leased before the rest is read: texts in it are tokenized)."""
    return model_name({k: v for k, v in json_object("body", body).items() if v is not None})


def parse(body: Any, tokenize: Callable[[str], list[int]]) -> LlamaCompletion:
    """`tokenize`: the leased model's, for logit_bias keyed by text (each of its tokens biased)."""
    values = {k: v for k, v in json_object("body", body).items() if v is not None}
    openai: dict[str, Any] = {}
    for name, value in values.items():
        if name == "prompt":
            openai[name] = _prompt(value)
        elif name in SAME:
            openai[name] = value
        elif name in RENAMED:
            openai[RENAMED[name]] = value
        elif name in NEUTRAL:
            if value != NEUTRAL[name]:
                raise invalid(f"{name}: not supported by llamaserve (leave it at {json.dumps(NEUTRAL[name])})")
        elif name == "json_schema":
            openai["grammar"] = _schema_grammar(value)
        elif name not in (*NO_EFFECT, *NEUTRAL_ANY, "return_tokens"):
            raise invalid(f"{str(name)[:64]}: unsupported parameter")
    if "json_schema" in values and "grammar" in values:
        raise invalid("json_schema: cannot be combined with grammar")
    unlimited = isinstance(openai.get("max_tokens"), int) and openai["max_tokens"] < 0
    if unlimited:
        del openai["max_tokens"]
    if isinstance(openai.get("seed"), int) and openai["seed"] < 0:
        del openai["seed"]  # -1: a random seed
    return_tokens = bool(values.get("return_tokens", False))
    if return_tokens and "logprobs" not in openai:
        openai["logprobs"] = 0  # the chosen tokens' ids come with their log-probabilities
    elif openai.get("logprobs") == 0 and not return_tokens:
        del openai["logprobs"]
    if "logit_bias" in openai:
        openai["logit_bias"] = _logit_bias(openai["logit_bias"], tokenize)
    if "prompt" not in openai:
        raise invalid("prompt: required")
    return LlamaCompletion(parse_completion(openai), return_tokens, unlimited)


def _prompt(value: Any) -> Any:
    """llama-server's prompts: OpenAI's forms, and {"prompt_string": ...} objects among them."""
    if not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            if item.get("multimodal_data"):
                raise invalid(f"prompt[{i}].multimodal_data: images and audio are not supported (text models only)")
            item = item.get("prompt_string")
            if not isinstance(item, str):
                raise invalid(f"prompt[{i}].prompt_string: must be a string")
        out.append(item)
    return out


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


def _schema_grammar(schema: Any) -> str:
    try:
        return schema_to_grammar(json_object("json_schema", schema))
    except SchemaError as exc:
        raise invalid(f"json_schema: {exc}") from None
