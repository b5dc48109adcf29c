"""Prefix keys for routing: which earlier requests a request's prompt starts like.

A prompt is cut into pieces whose ends are the places worth matching at: one piece per chat
message (system prompt, then each turn), or BLOCK_CHARS characters of a plain prompt. Its
keys are hashes of every prefix of whole pieces (the model's name included). A conversation's
next turn repeats the last turn's messages, so one of its keys is the whole previous prompt:
the replica that served it holds that prefix in its cache. A prefix many requests share (one
system prompt) is remembered with each replica that served it, so those requests still
spread over the replicas that hold it.

No Ray here: the gateway computes the keys, the router (router.py) looks them up. Where a
request's prompt is, its API family says (server/family.py, server/prompt_pieces.py).
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from llamaserve.server.families import FAMILIES

MIN_PREFIX_CHARS = 64  # a shorter prefix costs little to prefill anywhere: no key
MAX_KEYS = 32  # the longest prefixes only: a long conversation's earlier turns are in them
REPLICAS_PER_KEY = 4  # replicas remembered for a shared prefix, most recent last


def prefix_keys(path: str, raw_body: bytes) -> list[str]:
    """Keys of a request body's prompt prefixes, shortest first; [] when there is nothing to
    route on (not a generation path, not JSON, a short prompt)."""
    pieces_of = FAMILIES.prompt_pieces(path)
    if pieces_of is None:
        return []
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(body, dict):
        return []
    digest = hashlib.blake2b(str(body.get("model", "default")).encode(), digest_size=12)
    keys, length = [], 0
    for piece in pieces_of(body):
        digest.update(piece.encode("utf-8", "surrogatepass"))
        length += len(piece)
        if length >= MIN_PREFIX_CHARS:
            keys.append(digest.copy().hexdigest())
    return keys[-MAX_KEYS:]


class AffinityMap:
    """Bounded LRU: prefix key -> the replicas that served it, most recent last."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._replicas: OrderedDict[str, list[Hashable]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._replicas)

    def remember(self, keys: list[str], replica: Hashable) -> None:
        for key in keys:
            replicas = [r for r in self._replicas.pop(key, []) if r != replica]
            self._replicas[key] = [*replicas[-(REPLICAS_PER_KEY - 1):], replica]
        while len(self._replicas) > self.capacity:
            self._replicas.popitem(last=False)

    def lookup(self, keys: list[str], alive: Any) -> list[Hashable]:
        """The replicas (in `alive`, a container) that served the longest of `keys` any of
        them served; [] when none did."""
        for key in reversed(keys):
            replicas = [r for r in self._replicas.get(key, ()) if r in alive]
            if replicas:
                self._replicas.move_to_end(key)
                return replicas
        return []

    def forget(self, replica: Hashable) -> None:
        for key in list(self._replicas):
            left = [r for r in self._replicas[key] if r != replica]
            if left:
                self._replicas[key] = left
            else:
                del self._replicas[key]
