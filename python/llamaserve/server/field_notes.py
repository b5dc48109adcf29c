"""What the request fields that several APIs share mean, for /openapi.json and /docs where a
family's schema says nothing of its own (a schema's own description always wins)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_NOTES = {
    "model": "the model to use: a name the model list shows (with one model served, `default` works)",
    "stream": "send the answer as server-sent events as it is generated",
    "stream_options": "what a stream adds, e.g. include_usage: a last event with the token counts",
    "messages": "the conversation so far, oldest first",
    "prompt": "the text (or token ids) to continue",
    "input": "what to answer: a text, or the conversation's items",
    "instructions": "a system message put before the input",
    "system": "the system prompt: a text or text blocks",
    "content": "the text to count or embed",
    "tools": "functions the model may call, each with a JSON Schema of its arguments",
    "tool_choice": "whether the model may (auto), must (required, or a named function) or must not (none) call a tool",
    "parallel_tool_calls": "whether one reply may call several tools (false: at most one)",
    "stop": "texts that end the reply when generated (not included)",
    "stop_sequences": "texts that end the reply when generated (not included)",
    "n": "how many replies to generate for the one prompt",
    "logprobs": "return the log-probabilities of the chosen tokens",
    "top_logprobs": "also the most likely alternatives at each position (0 to 20)",
    "echo": "put the prompt in front of the completion",
    "response_format": "the form of the reply: text, json_object, or json_schema with a schema it must match",
    "reasoning_effort": "how long a reasoning model may think: none, minimal, low, medium or high",
    "reasoning": "a reasoning model's effort (and whether a summary is asked for)",
    "thinking": "a reasoning model's thinking: enabled with a token budget, or disabled",
    "text": "the reply's format (text.format: text, json_object or json_schema)",
    "truncation": "accepted; a conversation longer than the context is refused, never cut",
    "metadata": "accepted and not stored (the server keeps no state)",
    "user": "an end-user id; accepted, not stored",
    "requests": "the generations to run together, each a generate request's body",
    "encoding_format": "float (a list of numbers) or base64 (little-endian float32)",
    "dimensions": "accepted when it is the model's own embedding size (embeddings are not cut short)",
    "tokens": "the token ids to turn back into text",
    # Ollama's
    "format": "json, or a JSON schema the reply must match",
    "options": "sampling (num_predict, temperature, top_k, top_p, min_p, seed, stop, repeat_penalty, ...); "
               "num_ctx is checked against the loaded context; other keys are ignored",
    "think": "a reasoning model's thinking: true, false, or low, medium, high",
    "keep_alive": "0 unloads the model after the request; other values are accepted",
    "raw": "the prompt as written, without the chat template",
}


def with_field_notes(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with a description on each property that has none but a note here."""
    out = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {
            name: ({**prop, "description": FIELD_NOTES[name]}
                   if isinstance(prop, Mapping) and "description" not in prop and name in FIELD_NOTES else prop)
            for name, prop in properties.items()}
    return out
