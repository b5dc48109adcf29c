"""What `serve` checks before it binds a port: the folders and the model it was told to use.
A wrong --model or --models-dir ends the command with one line naming what was given and where
it was looked for, instead of a server that answers 503 to everything. (A file that is found
but fails to load still leaves the server up, saying why on /health: that is the app's job.)"""
from __future__ import annotations

from pathlib import Path

from llamaserve.config import ServerConfig
from llamaserve.errors import ModelLoadError
from llamaserve.hosting.host import ModelHost


def check_models(config: ServerConfig, host: ModelHost) -> None:
    """ValueError naming the flag when the configured folders or model cannot be found (or, for
    --cache-dir and --slot-save-path, made)."""
    if config.models_dir is not None and not Path(config.models_dir).expanduser().is_dir():
        raise ValueError(f"--models-dir: {config.models_dir} is not a folder")
    if config.models_config is not None and not Path(config.models_config).expanduser().is_file():
        raise ValueError(f"--models-config: {config.models_config} is not a file")
    for flag, folder in (("--cache-dir", config.cache_dir), ("--slot-save-path", config.slot_save_path)):
        if folder is None:
            continue
        try:  # made now, as the engine would: a path it cannot be made at ends serve here
            Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{flag}: {folder} cannot be a folder ({exc.strerror or exc})") from None
    try:
        host.configured_entry()
    except ModelLoadError:
        raise ValueError(f"--model: {_not_found(config.model or '', host)}") from None


def _not_found(model: str, host: ModelHost) -> str:
    if "/" in model or model.lower().endswith(".gguf"):
        what = f"{model}: no such file, nor a model of that name"
    else:
        what = f"no model named {model!r}"
    return f"{what}; {host.registry.available()}"
