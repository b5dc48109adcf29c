"""The one request model for generation parameters: a table of names, kinds and ranges that
the Python engine API, the native HTTP API and the OpenAI-compatible API all check against.
Each API only maps its own field names onto these; a bad value raises InvalidRequest whose
message starts with the parameter's name, the same wherever it was sent.

Ranges follow the OpenAI API where it defines the parameter (temperature 0 to 2, penalties
-2 to 2, logit bias -100 to 100, at most 20 top log-probabilities) and llama.cpp where only
it does (top_k, min_p, repeat_penalty; penalty_last_n -1 is the whole context; seeds are
32-bit). Integers that reach native code are range-checked here, and strings must be
valid Unicode (a lone surrogate cannot become UTF-8).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamaserve.errors import InvalidRequest

INT32_MAX = 2**31 - 1
SEED_MAX = 2**32 - 2  # 2**32 - 1 is llama.cpp's "random seed"
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 512
MAX_TOP_LOGPROBS = 20
MAX_LOGIT_BIAS = 1024


# -- checks of one value --------------------------------------------------------------------

def check_integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
        raise InvalidRequest(f"{name}: must be between {low} and {high}, got {shown}")
    return value


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name}: must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        raise InvalidRequest(f"{name}: must be between {low:g} and {high:g}") from None
    if not math.isfinite(value):
        raise InvalidRequest(f"{name}: must be a finite number")
    if low_open and value <= low:
        raise InvalidRequest(f"{name}: must be greater than {low:g} and at most {high:g}, got {value:g}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name}: must be between {low:g} and {high:g}, got {value:g}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name}: must be true or false")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InvalidRequest(f"{name}: must be one of {', '.join(choices)}")
    return value


def check_text(name: str, value: Any) -> str:
    """A string that can be encoded as UTF-8 for the native engine."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{name}: not valid Unicode (a lone surrogate at character {exc.start})") from None
    return value


def check_token_ids(name: str, value: Any) -> list[int]:
    """A prompt of token ids: non-empty, each an int32 (the engine checks the vocabulary)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InvalidRequest(f"{name}: must be a list of token ids")
    if not value:
        raise InvalidRequest(f"{name}: must not be empty")
    for token in value:
        if isinstance(token, bool) or not isinstance(token, int):
            raise InvalidRequest(f"{name}: a token id must be an integer, got {type(token).__name__}")
        if not 0 <= token <= INT32_MAX:
            raise InvalidRequest(f"{name}: unknown token id {str(token)[:24]}")
    return list(value)


def check_prompt(name: str, value: Any) -> str | list[int]:
    """A prompt: text, or a list of token ids."""
    if isinstance(value, str):
        return check_text(name, value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return check_token_ids(name, value)
    raise InvalidRequest(f"{name}: must be a string or a list of token ids")


def check_prompts(name: str, value: Any, max_items: int) -> list[str | list[int]]:
    """One prompt or several, as the OpenAI API takes them: a text, a list of token ids, or
    a list of texts and token-id lists; none empty."""
    if isinstance(value, str) or (isinstance(value, list) and value
                                  and all(isinstance(t, int) and not isinstance(t, bool) for t in value)):
        value = [value]
        names = [name]
    else:
        if not isinstance(value, list) or not value:
            raise InvalidRequest(f"{name}: must be a non-empty string or array")
        if len(value) > max_items:
            raise InvalidRequest(f"{name}: at most {max_items} items in one request")
        names = [f"{name}[{i}]" for i in range(len(value))]
    out: list[str | list[int]] = []
    for where, item in zip(names, value):
        if not isinstance(item, (str, list)) or not item:
            raise InvalidRequest(f"{where}: must be a non-empty string or array of token ids")
        out.append(check_prompt(where, item))
    return out


def _stop(name: str, value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, Sequence) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest(f"{name}: must be a string or a list of strings")
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"{name}: at most {MAX_STOP_STRINGS} strings")
    for s in stops:
        if not 1 <= len(s) <= MAX_STOP_LENGTH:
            raise InvalidRequest(f"{name}: each string must have 1 to {MAX_STOP_LENGTH} characters")
        check_text(name, s)
    return list(stops)


def _logit_bias(name: str, value: Any) -> dict[int, float]:
    """Token id (an integer or its decimal string, as JSON keys are) -> a bias; -inf bans."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{name}: must map token ids to numbers")
    if len(value) > MAX_LOGIT_BIAS:
        raise InvalidRequest(f"{name}: at most {MAX_LOGIT_BIAS} tokens")
    out: dict[int, float] = {}
    for key, bias in value.items():
        token = key if isinstance(key, int) and not isinstance(key, bool) else None
        if isinstance(key, str) and key.strip().isascii() and key.strip().isdigit():
            token = int(key)
        if token is None or not 0 <= token <= INT32_MAX:
            raise InvalidRequest(f"{name}: key {str(key)[:32]!r} is not a token id")
        if isinstance(bias, float) and bias == -math.inf:
            out[token] = -math.inf
        else:
            out[token] = check_number(name, bias, -100.0, 100.0)
    return out


# -- the table ------------------------------------------------------------------------------

MAX_PREDICTION_LENGTH = 1 << 20  # characters


def _prediction(name: str, value: Any) -> str:
    """Text the output is expected to repeat: a string, or OpenAI's predicted output
    {"type": "content", "content": a string or a list of text parts}."""
    if isinstance(value, Mapping):
        if value.get("type") != "content":
            raise InvalidRequest(f"{name}: its type must be 'content'")
        content = value.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise InvalidRequest(f"{name}: content parts must be {{'type': 'text', 'text': ...}}")
            content = "".join(p["text"] for p in content)
        value = content
    text = check_text(name, value)
    if len(text) > MAX_PREDICTION_LENGTH:
        raise InvalidRequest(f"{name}: longer than {MAX_PREDICTION_LENGTH} characters")
    return text


@dataclass(frozen=True)
class Parameter:
    name: str
    check: Callable[[str, Any], Any]
    schema: dict[str, Any]  # the JSON schema of its values, for API descriptions
    doc: str

    def __call__(self, value: Any) -> Any:
        return self.check(self.name, value)


def _integer(name: str, low: int, high: int, doc: str) -> Parameter:
    return Parameter(name, lambda n, v: check_integer(n, v, low, high),
                     {"type": "integer", "minimum": low, "maximum": high}, doc)


def _number(name: str, low: float, high: float, doc: str, *, low_open: bool = False) -> Parameter:
    bound = {"exclusiveMinimum": low} if low_open else {"minimum": low}
    return Parameter(name, lambda n, v: check_number(n, v, low, high, low_open=low_open),
                     {"type": "number", **bound, "maximum": high}, doc)


def _flag(name: str, doc: str) -> Parameter:
    return Parameter(name, check_bool, {"type": "boolean"}, doc)


MAX_PRESERVED_TOKENS = 64  # a chat format has a handful of markers


def _preserved_tokens(name: str, value: Any) -> list[int]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) > MAX_PRESERVED_TOKENS:
        raise InvalidRequest(f"{name}: at most {MAX_PRESERVED_TOKENS} token ids")
    return check_token_ids(name, value) if value else []


PARAMETERS: dict[str, Parameter] = {p.name: p for p in (
    _integer("max_tokens", 1, INT32_MAX, "most tokens to generate"),
    _number("temperature", 0.0, 2.0, "sampling temperature; 0 is greedy"),
    _integer("top_k", 0, INT32_MAX, "keep the k most likely tokens (0: all)"),
    _number("top_p", 0.0, 1.0, "nucleus sampling: keep the tokens of this much probability",
            low_open=True),
    _number("min_p", 0.0, 1.0, "drop tokens less likely than this times the most likely one"),
    _number("repeat_penalty", 0.0, 10.0, "divide the logits of recent tokens by this (1: off)",
            low_open=True),
    _number("presence_penalty", -2.0, 2.0, "subtract this from the logits of tokens seen"),
    _number("frequency_penalty", -2.0, 2.0, "subtract this per occurrence of a token seen"),
    _integer("penalty_last_n", -1, 2**20, "how many recent tokens the penalties see (-1: the whole context)"),
    _integer("seed", 0, SEED_MAX, "random seed of the sampler, for reproducible output"),
    Parameter("stop", _stop, {"oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_STOP_LENGTH},
        {"type": "array", "maxItems": MAX_STOP_STRINGS,
         "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_LENGTH}}]},
        "end the text before any of these strings"),
    _flag("ignore_eos", "keep generating past the end-of-sequence token"),
    Parameter("logit_bias", _logit_bias, {
        "type": "object", "maxProperties": MAX_LOGIT_BIAS, "propertyNames": {"pattern": "^[0-9]{1,9}$"},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        "token id -> bias added to its logit"),
    Parameter("grammar", check_text, {"type": "string"}, "GBNF grammar the text must follow"),
    _flag("add_special", "add the model's special tokens (BOS) to a text prompt"),
    _flag("parse_special", "read control tokens written in a text prompt"),
    Parameter("reasoning_start", check_text, {"type": "string"}, "a reasoning model's opening thinking marker"),
    Parameter("reasoning_end", check_text, {"type": "string"}, "its closing thinking marker"),
    _flag("reasoning_open", "the prompt opened the thinking: the reply starts inside it"),
    _integer("reasoning_budget", -1, INT32_MAX, "most thinking tokens before the engine closes the thinking "
             "(0: at once; -1: no limit)"),
    Parameter("preserved_tokens", _preserved_tokens, {
        "type": "array", "maxItems": MAX_PRESERVED_TOKENS, "items": {"type": "integer", "minimum": 0, "maximum": INT32_MAX}},
        "control tokens written out as text in the output (a chat format's markers)"),
    _integer("logprobs", 0, MAX_TOP_LOGPROBS, "log-probabilities of each token and its top N alternatives"),
    _integer("id_slot", -1, INT32_MAX, "the slot that runs the request, waiting for it while it is busy "
             "(llama-server's id_slot; -1: the one whose cache serves most of the prompt)"),
    _flag("return_progress", "report the prompt's progress while it is processed (streams: "
          "AsyncTextStream.take_progress)"),
    _flag("post_sampling_probs", "the logprobs after the sampler chain (top_k, top_p, min_p, temperature) over "
          "the tokens it left, instead of the model's own"),
    _flag("cache_prompt", "reuse cached KV for the prompt's longest cached prefix (default true; "
          "false recomputes the whole prompt, for bit-reproducible results)"),
    _flag("speculative", "verify drafted tokens (from the request's own text, or a draft model) "
          "several at a time when the server speculates (default true; false decodes one token a step)"),
    Parameter("prediction", _prediction, {"oneOf": [
        {"type": "string"},
        {"type": "object", "required": ["type", "content"], "properties": {
            "type": {"const": "content"},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                "type": "object", "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}}]},
        "text the output will largely repeat (OpenAI's predicted outputs: the file being edited); "
        "drafts are also taken from it"),
)}


PROMPT_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "string", "minLength": 1},
    {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": INT32_MAX}}]}


def properties_schema(names: Sequence[str]) -> dict[str, Any]:
    """JSON-schema properties of the named parameters (for API descriptions)."""
    return {name: {**PARAMETERS[name].schema, "description": PARAMETERS[name].doc} for name in names}


def validate(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments, checked and normalized (nulls dropped); InvalidRequest names the first
    unknown or bad one."""
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        parameter = PARAMETERS.get(name)
        if parameter is None:
            raise InvalidRequest(f"{str(name)[:64]}: unknown generation argument")
        if value is not None:
            out[name] = parameter(value)
    return out
