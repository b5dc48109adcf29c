"""llama-cpp-python's `Llama(...)` constructor arguments as Engine.load's. Each argument is
mapped, accepted without effect (tuning llama.cpp does on its own here), or refused by name
when set to anything but its default (what would change the model's output and that
llamaserve does not do)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaserve.compat.errors import UnsupportedArgument
from llamaserve.models.gguf import read_gguf_info

LOG = logging.getLogger("llamaserve.compat")

DEFAULT_SEED = 0xFFFFFFFF  # llama-cpp-python's "a random seed"
DEFAULT_N_PARALLEL = 8  # slots batched together: calls from 8 threads decode at once
# llama-cpp-python's type_k / type_v are ggml type numbers.
GGML_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 20: "iq4_nl", 30: "bf16"}

# Accepted and without effect: llama.cpp's own choices here (threads for a batch, mmap, one device).
NO_EFFECT = frozenset({"n_ubatch", "n_threads_batch", "use_mmap", "use_mlock", "offload_kqv", "op_offload",
                       "mul_mat_q", "logits_all", "no_perf", "last_n_tokens_size", "numa", "split_mode",
                       "main_gpu", "embedding"})
# Refused unless left at llama-cpp-python's default (None, or the value named).
UNSUPPORTED = {"tensor_split": None, "rpc_servers": None, "vocab_only": False, "kv_overrides": None,
               "rope_scaling_type": -1, "pooling_type": -1, "rope_freq_base": 0.0, "rope_freq_scale": 0.0,
               "yarn_ext_factor": -1.0, "yarn_attn_factor": 1.0, "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0,
               "yarn_orig_ctx": 0, "lora_base": None, "lora_path": None, "lora_scale": 1.0, "tokenizer": None,
               "chat_handler": None, "spm_infill": False}
_WHY = {"chat_handler": "images and custom chat handlers are not supported; the model's own chat template is used",
        "tokenizer": "the model's own tokenizer is used",
        "lora_path": "LoRA adapters are not supported", "lora_base": "LoRA adapters are not supported"}
MAPPED = frozenset({"n_gpu_layers", "seed", "n_ctx", "n_batch", "n_threads", "verbose", "flash_attn", "type_k",
                    "type_v", "draft_model", "chat_format", "swa_full", "n_parallel"})


@dataclass(frozen=True)
class Settings:
    load: dict[str, Any]  # Engine.load's arguments
    seed: int | None  # every call's seed unless the call names one; None: random
    chat_format: str | None = None
    ignored: list[str] = field(default_factory=list)


def settings(model_path: str | os.PathLike[str], options: dict[str, Any]) -> Settings:
    path = Path(model_path)
    if not path.is_file():
        raise ValueError(f"Model path does not exist: {model_path}")
    load: dict[str, Any] = {"n_ctx": 512, "n_parallel": DEFAULT_N_PARALLEL}
    ignored = []
    for name, value in options.items():
        if name in NO_EFFECT:
            ignored.append(name)
        elif name in UNSUPPORTED:
            if value is not None and value != UNSUPPORTED[name]:
                raise UnsupportedArgument(f"{name}: {_WHY.get(name, 'not supported by llamaserve')}")
        elif name not in MAPPED:
            raise TypeError(f"Llama() got an unexpected keyword argument {name!r}")
    for name in ("n_ctx", "n_batch", "n_gpu_layers", "n_parallel", "swa_full"):
        if options.get(name) is not None:
            load[name] = options[name]
    if load["n_ctx"] == 0:
        load["n_ctx"] = _trained_context(path)
    if options.get("n_threads") is not None:
        load["n_threads"] = options["n_threads"]
    load["verbose"] = bool(options.get("verbose", True))
    load["flash_attn"] = "on" if options.get("flash_attn") else "auto"
    for name, engine_name in (("type_k", "cache_type_k"), ("type_v", "cache_type_v")):
        if options.get(name) is not None:
            load[engine_name] = GGML_TYPES.get(options[name], options[name]) if isinstance(options[name], int) \
                else options[name]
    load.update(_draft(options.get("draft_model")))
    seed = options.get("seed", DEFAULT_SEED)
    return Settings(load, None if seed in (None, DEFAULT_SEED, -1) else int(seed), options.get("chat_format"), ignored)


def _draft(draft: Any) -> dict[str, Any]:
    """LlamaPromptLookupDecoding(num_pred_tokens=n) is n-gram speculation drafting n tokens; a
    path is a draft model (llamaserve's own addition)."""
    if draft is None:
        return {}
    if isinstance(draft, (str, os.PathLike)):
        return {"draft_model": draft}
    if hasattr(draft, "num_pred_tokens"):
        return {"spec": "ngram", "spec_draft_max": int(draft.num_pred_tokens)}
    raise UnsupportedArgument("draft_model: a LlamaPromptLookupDecoding or the path of a draft model's GGUF file")


def _trained_context(path: Path) -> int:
    """n_ctx=0: the context the model was trained for, read from the file's header."""
    return read_gguf_info(path).context_length or 4096
