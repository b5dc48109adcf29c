"""What every engine call shares: a prompt's type, the generation arguments as the native
structs, and a finished stream's failure as its typed error."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llamaserve import _native
from llamaserve.errors import EngineError, InvalidRequest
from llamaserve.generation_params import validate

Prompt = str | Sequence[int]
_SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                   "frequency_penalty", "penalty_last_n", "seed", "grammar")
_OPTION_FIELDS = ("max_tokens", "stop", "ignore_eos", "logprobs", "post_sampling_probs", "return_progress", "id_slot",
                  "add_special", "parse_special",
                  "cache_prompt", "speculative", "prediction", "preserved_tokens", "reasoning_start", "reasoning_end",
                  "reasoning_open", "reasoning_budget")


def native_settings(arguments: dict[str, Any], n_ctx: int) -> tuple[_native.SamplingParams,
                                                                    _native.GenerationOptions]:
    """Checked generation arguments (llamaserve.generation_params) as the native structs; a
    prediction that Engine.prepare tokenized goes as it is."""
    prepared = arguments.get("prediction")
    if isinstance(prepared, _native.TokenIds):
        arguments = {name: value for name, value in arguments.items() if name != "prediction"}
    checked = validate(arguments)
    sampling, options = _native.SamplingParams(), _native.GenerationOptions()
    for name in _SAMPLING_FIELDS:
        if name in checked:
            setattr(sampling, name, checked[name])
    if checked.get("penalty_last_n") == -1:  # llama.cpp's convention: the whole context
        sampling.penalty_last_n = n_ctx
    sampling.logit_bias = list(checked.get("logit_bias", {}).items())
    for name in _OPTION_FIELDS:
        if name in checked:
            setattr(options, name, checked[name])
    if isinstance(prepared, _native.TokenIds):
        options.prediction_tokens = prepared
    return sampling, options


def failure_of(stats: dict[str, Any]) -> EngineError | None:
    """The error a finished stream's stats report, typed: InvalidRequest (400) when the request
    was at fault (its grammar ran over its step budget), else EngineError; None if it did not fail."""
    if stats["finish_reason"] != "error":
        return None
    if stats.get("error_type") == "invalid_request":
        return InvalidRequest(stats["error"])
    return EngineError(stats["error"] or "generation failed")


def raise_if_failed(native: _native.TokenStream) -> None:
    error = failure_of(native.stats())
    if error is not None:
        raise error

