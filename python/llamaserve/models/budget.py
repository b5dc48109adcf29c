"""The memory budget of loaded models: which idle ones to unload, least recently used first."""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Resident:
    """A loaded model as the budget sees it."""
    key: str
    memory: int
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    pinned: bool = False


class LruBudget:
    """Which idle models to unload so that `needed` more bytes fit in `limit`."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def victims(self, residents: Iterable[Resident], needed: int, reserved: int = 0) -> list[Resident] | None:
        """The least recently used idle models whose unloading makes room, in unload order;
        [] when it already fits; None when it cannot fit even after unloading every idle one."""
        if self.limit is None:
            return []
        residents = list(residents)
        used = sum(r.memory for r in residents) + reserved
        if used + needed <= self.limit:
            return []
        out = []
        for r in sorted((r for r in residents if r.active == 0 and not r.pinned), key=lambda r: r.last_used):
            out.append(r)
            used -= r.memory
            if used + needed <= self.limit:
                return out
        return None
