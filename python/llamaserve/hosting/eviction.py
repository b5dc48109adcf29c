"""Which loaded models make way: the least recently used idle ones when a load needs memory
(--max-memory), the oldest when too many are loaded (--max-models)."""
from __future__ import annotations

from collections.abc import Iterable

from llamaserve.hosting.errors import InsufficientMemory
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.models import LruBudget, Resident, gigabytes


def to_unload_for(budget: LruBudget, models: Iterable[LoadedModel], reserved: int, name: str,
                  needed: int) -> list[LoadedModel]:
    """The models to unload so that `needed` more bytes fit beside `reserved` (loads in
    progress); InsufficientMemory when even unloading every idle one is not enough."""
    if budget.limit is None:
        return []
    models = list(models)
    residents = [Resident(str(id(m)), m.memory_bytes, m.active, m.last_used, pinned=not m.owned) for m in models]
    victims = budget.victims(residents, needed, reserved)
    if victims is None:
        in_use = sum(r.memory for r in residents) + reserved
        raise InsufficientMemory(
            f"model: {name[:64]!r} needs about {gigabytes(needed)}; {gigabytes(in_use)} of the "
            f"{gigabytes(budget.limit)} budget is in use by models that are busy or loading",
            "retry when requests finish, unload a model, or raise --max-memory")
    by_key = {str(id(m)): m for m in models}
    return [by_key[v.key] for v in victims]


def over_the_count(loaded: Iterable[LoadedModel], newest: LoadedModel, limit: int) -> list[LoadedModel]:
    """With --max-models: the models to retire so that `limit` stay, idle and least
    recently used first; never `newest`."""
    models = list(loaded)
    if not limit or len(models) <= limit:
        return []
    others = sorted((m for m in models if m is not newest), key=lambda m: (m.active > 0, m.last_used))
    return others[:len(models) - limit]
