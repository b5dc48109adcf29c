"""PrefixAffinityRouter: a Ray Serve request router for the engine replicas.

A request whose prompt starts like one a replica served (its prefix keys, affinity.py, sent
by the gateway as the `prefix_keys` argument) goes to the least busy of the replicas that
served its longest known prefix (their prefix caches hold it), leaving out any with more than
IMBALANCE ongoing requests beyond the least busy replica of all; when none is left, and for
requests without a known prefix, power of two choices decides (two replicas at random, the
less busy one). Either way the chosen replica is remembered for the request's keys.

Not FIFOMixin: it hands a replica chosen for one request to whichever request waited
longest, which would send a prefix to a replica that never saw it.
"""
from __future__ import annotations

import logging
import random
from typing import Any

from ray.serve.request_router import (
    LocalityMixin, MultiplexMixin, PendingRequest, ReplicaID, RequestRouter, RunningReplica)

from llamaserve.ray.affinity import AffinityMap

log = logging.getLogger("ray.serve")

IMBALANCE = 2  # ongoing requests a preferred replica may have beyond the least busy one


class PrefixAffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):
    def initialize_state(self, imbalance: int = IMBALANCE, capacity: int = 100_000, **_: Any) -> None:
        self.imbalance = imbalance
        self.affinity = AffinityMap(capacity)

    @staticmethod
    def _keys(pending_request: PendingRequest | None) -> list[str]:
        if pending_request is None:
            return []
        return list(pending_request.kwargs.get("prefix_keys") or ())

    def _queue_len(self, replica: RunningReplica) -> int:
        return self.replica_queue_len_cache.get(replica.replica_id) or 0

    def _two_choices(self, candidates: list[RunningReplica]) -> list[RunningReplica]:
        return random.sample(candidates, min(2, len(candidates)))

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        fallback = self._two_choices(candidate_replicas)
        keys = self._keys(pending_request)
        if not keys:
            return [fallback]
        by_id = {r.replica_id: r for r in candidate_replicas}
        least = min(self._queue_len(r) for r in candidate_replicas)
        preferred = [by_id[i] for i in self.affinity.lookup(keys, by_id)
                     if self._queue_len(by_id[i]) - least <= self.imbalance]
        if not preferred:
            return [fallback]
        # The least busy replica holding the prefix; if all refuse (full), the two random ones.
        return [preferred, [r for r in fallback if r not in preferred] or fallback]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        keys = self._keys(pending_request)
        if keys:
            self.affinity.remember(keys, replica_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.affinity.forget(replica_id)
