"""The models config: a TOML file that names models, points them at files and gives them
per-model defaults. Every key is optional:

    models_dir = "/srv/models"          # default folder (relative names resolve in it)
    [defaults]
    n_ctx = 4096
    n_parallel = 4
    [models."llama-2-7b-chat"]          # a name clients use
    file = "llama-2-7b-chat.Q4_0.gguf"  # relative to the models folder, or absolute
    n_ctx = 2048
    n_parallel = 2
    chat_template = "llama2"            # a built-in template's name or Jinja source
    aliases = ["llama2"]
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaserve.models.errors import InvalidModelName, ModelsConfigError
from llamaserve.models.names import check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ModelSettings:
    """Per-model defaults from the config file (None: the server's)."""
    n_ctx: int | None = None
    n_parallel: int | None = None
    chat_template: str | None = None

    def merged(self, other: ModelSettings) -> ModelSettings:
        """self, with other's values where self has none."""
        return ModelSettings(*(a if a is not None else b for a, b in
                               zip((self.n_ctx, self.n_parallel, self.chat_template),
                                   (other.n_ctx, other.n_parallel, other.chat_template))))


@dataclass(frozen=True)
class ConfiguredModel:
    """A model the config file names: its file (as written) and what it sets."""
    name: str
    file: Path
    settings: ModelSettings
    aliases: tuple[str, ...]


def load_models_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the TOML models config; ModelsConfigError says what is wrong."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ModelsConfigError(f"models config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelsConfigError(f"models config {path}: {exc}") from None
    unknown = set(data) - {"models_dir", "defaults", "models"}
    if unknown:
        raise ModelsConfigError(f"models config {path}: unknown key {sorted(unknown)[0]!r}")
    return data


def parse_settings(where: str, table: Any, extra: Iterable[str] = ()) -> ModelSettings:
    """The settings of a [defaults] or [models.NAME] table (`where`, for errors), which may
    also hold the keys in `extra`."""
    if not isinstance(table, dict):
        raise ModelsConfigError(f"{where}: must be a table")
    allowed = {"n_ctx", "n_parallel", "chat_template", *extra}
    for key in table:
        if key not in allowed:
            raise ModelsConfigError(f"{where}: unknown key {key!r}")
    for key in ("n_ctx", "n_parallel"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ModelsConfigError(f"{where}.{key}: must be a positive integer")
    template = table.get("chat_template")
    if template is not None and not isinstance(template, str):
        raise ModelsConfigError(f"{where}.chat_template: must be a string")
    return ModelSettings(table.get("n_ctx"), table.get("n_parallel"), template)


def parse_models(models: Any) -> list[ConfiguredModel]:
    """The [models] table's models."""
    if not isinstance(models, dict):
        raise ModelsConfigError("models: must be a table of models")
    out = []
    for name, table in models.items():
        where = f"models.{name}"
        settings = parse_settings(where, table, extra=("file", "path", "aliases"))
        file = table.get("file", table.get("path"))
        if not isinstance(file, str) or not file:
            raise ModelsConfigError(f"{where}.file: required (a GGUF file name or path)")
        aliases = table.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ModelsConfigError(f"{where}.aliases: must be a list of names")
        for n in (name, *aliases):
            try:
                check_name(n)
            except InvalidModelName as exc:
                raise ModelsConfigError(f"{where}: {exc}") from None
        path = Path(file).expanduser()
        # the operator wrote the config, so its paths are trusted (unlike request names)
        out.append(ConfiguredModel(name.lower(), path, settings, tuple(a.lower() for a in aliases)))
    return out
