"""Response types of the OpenAI-compatible /v1 API: model objects, the envelope every
response and chunk of one request shares, and the choice shapes of chat and completions."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import llamaserve
from llamaserve.hosting.loaded import LoadedModel

def model_object(name: str, created: int, aliases: tuple[str, ...] = (),
                 tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAI's model object with llama-server's `aliases` (every name it answers to) and `tags`."""
    return {"id": name, "object": "model", "created": created, "owned_by": "llamaserve",
            "aliases": list(aliases or (name,)), "tags": list(tags)}


@dataclass(frozen=True)
class Envelope:
    """What every response and chunk of one request shares."""
    id: str
    created: int
    model: str
    system_fingerprint: str

    def chat(self, choices: list[dict[str, Any]], usage_: dict[str, int]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, "choices": choices, "usage": usage_}

    def chat_chunk(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None = None) -> dict[str, Any]:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "system_fingerprint": self.system_fingerprint, "choices": choices}
        if usage_ is not None:
            chunk["usage"] = usage_
        return chunk

    def completion(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, "choices": choices}
        if usage_ is not None:
            body["usage"] = usage_
        return body


def envelope(prefix: str, model: LoadedModel) -> Envelope:
    return Envelope(f"{prefix}-{secrets.token_hex(12)}", int(time.time()), model.name, fingerprint(model))


def fingerprint(model: LoadedModel) -> str:
    """Changes when the server version or the served model file changes; llama-server's form
    (b<build>-<hash>), which its clients check, where OpenAI's has no fixed one."""
    meta = model.engine.metadata
    key = f"{llamaserve.__version__}:{model.path.name}:{meta.get('file_size')}:{model.n_gpu_layers}"
    return f"b{llamaserve.__version__}-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def chat_choice(index: int, content: str | None, finish_reason: str, *, tool_calls: list[dict[str, Any]] | None = None,
                logprobs: list[dict[str, Any]] | None = None, reasoning: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def chat_delta(index: int, delta: dict[str, Any], finish_reason: str | None = None,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def completion_choice(index: int, text: str, finish_reason: str | None,
                      logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
