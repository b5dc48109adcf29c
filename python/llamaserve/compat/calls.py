"""llama-cpp-python's call arguments as an OpenAI request body, checked afterwards by the
OpenAI family's own parser (one validator per field). llama-cpp-python's sampling defaults
apply (they are not OpenAI's); its samplers llamaserve does not have are refused by name
unless left at their neutral value."""
from __future__ import annotations

from typing import Any

from llamaserve.compat.errors import UnsupportedArgument

# llama-cpp-python's samplers (and Python hooks) that llamaserve does not run: refused unless neutral.
NEUTRAL = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat_mode": 0, "stopping_criteria": None, "logits_processor": None}
# mirostat_tau and mirostat_eta are accepted without effect: they only tune a sampler above.


def sampling(args: dict[str, Any], default_seed: int | None, n_ctx: int) -> dict[str, Any]:
    """The generation fields both calls share, in OpenAI's names."""
    for name, neutral in NEUTRAL.items():
        if args.get(name) is not None and args[name] != neutral:
            raise UnsupportedArgument(f"{name}: not supported by llamaserve (leave it at {neutral!r})")
    body = {name: args[name] for name in ("temperature", "top_p", "top_k", "min_p", "presence_penalty",
                                          "frequency_penalty", "repeat_penalty", "logit_bias", "stream")
            if args.get(name) is not None}
    if args.get("stop"):
        body["stop"] = args["stop"]
    seed = args.get("seed")
    if seed is None:
        seed = default_seed
    if seed is not None:
        body["seed"] = seed
    max_tokens = args.get("max_tokens")
    # None or <= 0: up to the end of the context window, as llama-cpp-python does
    body["max_tokens"] = n_ctx if max_tokens is None or (isinstance(max_tokens, int) and max_tokens <= 0) \
        else max_tokens
    if args.get("grammar") is not None:
        body["grammar"] = grammar_text(args["grammar"])
    return body


def grammar_text(grammar: Any) -> str:
    """A LlamaGrammar (this package's or llama-cpp-python's: both keep the GBNF text) or a GBNF string."""
    if isinstance(grammar, str):
        return grammar
    text = getattr(grammar, "_grammar", None)
    if isinstance(text, str):
        return text
    raise UnsupportedArgument("grammar: a LlamaGrammar (LlamaGrammar.from_string) or a GBNF string")


def completion_body(args: dict[str, Any], default_seed: int | None, n_ctx: int) -> dict[str, Any]:
    body = {"prompt": args["prompt"], **sampling(args, default_seed, n_ctx)}
    for name in ("echo", "logprobs", "suffix"):
        if args.get(name) not in (None, False):
            body[name] = args[name]
    return body


def chat_body(args: dict[str, Any], default_seed: int | None, n_ctx: int) -> dict[str, Any]:
    body = {"messages": args["messages"], **sampling(args, default_seed, n_ctx)}
    for name in ("tools", "tool_choice", "response_format", "logprobs", "top_logprobs"):
        if args.get(name) is not None:
            body[name] = args[name]
    if args.get("functions") is not None:  # OpenAI's older names for tools
        body.setdefault("tools", [{"type": "function", "function": f} for f in args["functions"]])
    call = args.get("function_call")
    if call is not None and "tool_choice" not in body:
        body["tool_choice"] = call if isinstance(call, str) else {"type": "function", "function": call}
    return body
