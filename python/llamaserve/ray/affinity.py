"""Prefix keys for routing: which earlier requests a request's prompt starts like.

A prompt (a completion's `prompt`, or chat messages in order: system prompt, turns so far)
becomes one canonical text; its keys are hashes of that text's first BLOCK, 2*BLOCK, ...
characters. A request that continues a conversation shares every key of the earlier turn's
prompt, so the longest key a replica served last names the replica whose prefix cache holds
the most of it. Block-aligned keys (rather than one hash of the whole prompt) are what let
`[system, user1, assistant1, user2]` find the replica of `[system, user1]`.

No Ray here: the gateway computes the keys, the router (router.py) looks them up.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

BLOCK_CHARS = 256  # a prompt shorter than this has no key: its prefill is cheap anyway
MAX_KEYS = 32  # prompts longer than MAX_KEYS * BLOCK_CHARS share keys with their start
ROUTED_PATHS = ("/api/v1/generate", "/api/v1/generate/stream", "/v1/completions",
                "/v1/chat/completions", "/v1/messages", "/v1/responses")


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text of its parts (OpenAI, Anthropic)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\x1f".join(_text(part.get("text", part.get("content", "")) if isinstance(part, dict) else part)
                           for part in content)
    return "" if content is None else json.dumps(content, sort_keys=True, default=str)


def _messages(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages:
        if isinstance(message, dict):
            parts.append(f"{message.get('role', message.get('type', ''))}\x1e{_text(message.get('content'))}")
        else:
            parts.append(_text(message))
    return "\x1d".join(parts)


def prompt_text(path: str, body: dict[str, Any]) -> str:
    """The canonical prompt text of a generation request (empty when it has none)."""
    if path in ("/v1/chat/completions",):
        return _messages(body.get("messages"))
    if path == "/v1/messages":  # Anthropic: the system prompt comes apart from the turns
        return _text(body.get("system")) + "\x1d" + _messages(body.get("messages"))
    if path == "/v1/responses":
        items = body.get("input")
        return _text(body.get("instructions")) + "\x1d" + (items if isinstance(items, str) else _messages(items))
    prompt = body.get("prompt")
    if isinstance(prompt, list):  # /v1/completions: a batch of prompts, or token ids
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else json.dumps(prompt[:MAX_KEYS * 64])
    return prompt if isinstance(prompt, str) else ""


def prefix_keys(path: str, raw_body: bytes, block: int = BLOCK_CHARS) -> list[str]:
    """Keys of a request body's prompt prefixes, shortest first; [] when there is nothing to
    route on (not a generation path, not JSON, a short prompt)."""
    if path not in ROUTED_PATHS:
        return []
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(body, dict):
        return []
    text = prompt_text(path, body)
    digest = hashlib.blake2b(str(body.get("model", "default")).encode(), digest_size=12)
    keys = []
    for end in range(block, min(len(text), block * MAX_KEYS) + 1, block):
        digest.update(text[end - block:end].encode("utf-8", "surrogatepass"))
        keys.append(digest.copy().hexdigest())
    return keys


class AffinityMap:
    """Bounded LRU: prefix key -> the replica that served it last."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._replicas: OrderedDict[str, Hashable] = OrderedDict()

    def __len__(self) -> int:
        return len(self._replicas)

    def remember(self, keys: list[str], replica: Hashable) -> None:
        for key in keys:
            self._replicas[key] = replica
            self._replicas.move_to_end(key)
        while len(self._replicas) > self.capacity:
            self._replicas.popitem(last=False)

    def lookup(self, keys: list[str], alive: Any) -> Hashable | None:
        """The replica of the longest key still in `alive` (a container of replicas)."""
        for key in reversed(keys):
            replica = self._replicas.get(key)
            if replica is not None and replica in alive:
                self._replicas.move_to_end(key)
                return replica
        return None

    def forget(self, replica: Hashable) -> None:
        for key in [k for k, r in self._replicas.items() if r == replica]:
            del self._replicas[key]
