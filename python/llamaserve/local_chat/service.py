"""What the chat pipeline needs from a server, for one Engine in this process: the model as a
LoadedModel (its chat template compiled once), and a service that submits to it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llamaserve.engine import AsyncTextStream, Engine, Prompt
from llamaserve.hosting.loaded import LoadedModel


class LocalGeneration:
    """One submitted choice: its engine stream (there is no lease or metric to keep here)."""

    def __init__(self, stream: AsyncTextStream) -> None:
        self.stream = stream

    def close(self) -> None:
        self.stream.cancel()  # a no-op once finished


class LocalService:
    def submit(self, model: LoadedModel, prompt: Prompt, arguments: dict[str, Any]) -> LocalGeneration:
        return LocalGeneration(model.engine.astream(prompt, **arguments))


def local_model(engine: Engine) -> LoadedModel:
    path = Path(engine.metadata.get("path") or "model.gguf")
    return LoadedModel(name=path.stem.lower(), path=path, engine=engine, owned=False)
