"""What the host keeps per model: a loaded engine with its lease count, and a load in
progress."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from llamaserve.engine import Engine
from llamaserve.models import MemoryEstimate
from llamaserve.native import supports_gpu_offload


@dataclass(eq=False)
class LoadedModel:
    name: str
    path: Path
    engine: Engine
    owned: bool  # the server loaded it, so the server closes it
    n_gpu_layers: int = 0
    load_time: float = 0.0
    active: int = 0  # requests using it now
    retired: bool = False
    aliases: frozenset[str] = field(default_factory=frozenset)
    quantization: str | None = None
    memory: MemoryEstimate | None = None  # weights as loaded, KV cache and compute buffers
    last_used: float = field(default_factory=time.monotonic)
    keep_alive: float | None = None  # idle seconds before unloading, a client's (Ollama's keep_alive); None: the server's
    chat_template: str | None = None  # the models config's override (a built-in name or Jinja)

    def answers_to(self, name: str) -> bool:
        return name.lower() in self.aliases

    @property
    def device(self) -> str:
        return "gpu" if self.n_gpu_layers != 0 and supports_gpu_offload() else "cpu"

    @property
    def memory_bytes(self) -> int:
        if self.memory is not None:
            return self.memory.total
        return int(self.engine.metadata.get("weights_size") or 0)


@dataclass(eq=False)
class LoadJob:
    """A load in progress (quantizing first, when asked to): what the listing shows."""
    key: str
    name: str
    reserved: int  # estimated bytes, counted against the budget until it finishes
    phase: str = "queued"  # quantizing | loading
    progress: float = 0.0
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[LoadedModel] | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def same_file(a: Path, b: Path) -> bool:
    """The same model file: links are models of their own (a folder may name one file twice)."""
    return a.absolute() == b.absolute()
