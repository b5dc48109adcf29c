"""Model names: the spec's built-in aliases, how names compare, the quantization and shard
suffixes of file names, and the check that refuses names that are paths."""
from __future__ import annotations

import os
import re

from llamaserve.models.errors import InvalidModelName

MAX_NAME_LENGTH = 256

# A quantization type ending a file stem (".Q4_K_M", "-f16").
_QUANT_SUFFIX = re.compile(
    r"[._\-](?:(?:i?q\d(?:_\d|_k(?:_[a-z]+)?|_[a-z]+)*)|f16|f32|bf16|fp16|fp32|mxfp4(?:_moe)?)$",
    re.IGNORECASE)
# The shard numbering of a split model ("-00001-of-00003").
SPLIT_SUFFIX = re.compile(r"-(\d{5})-of-(\d{5})$")

# The spec's names -> the file-name bases that count as that model, best match first
# (compared after lower-casing and turning "_", "." and " " into "-").
SPEC_ALIASES: dict[str, tuple[str, ...]] = {
    "qwen-7b-chat": ("qwen-7b-chat", "qwen7b-chat", "qwen-7b-chat-v1", "qwen-chat-7b",
                     "qwen1-5-7b-chat", "qwen-1-5-7b-chat"),
    "qwen-14b-chat": ("qwen-14b-chat", "qwen14b-chat", "qwen-chat-14b", "qwen1-5-14b-chat",
                      "qwen-1-5-14b-chat"),
    "gemma-7b": ("gemma-7b", "gemma-7b-it", "gemma-1-1-7b-it", "gemma7b", "gemma7b-it"),
    "gemma-2b": ("gemma-2b", "gemma-2b-it", "gemma-1-1-2b-it", "gemma2b", "gemma2b-it"),
    "llama-2-7b-chat": ("llama-2-7b-chat", "llama2-7b-chat", "llama-2-7b-chat-hf", "llama2-7b-chat-hf",
                        "llama-2-chat-7b"),
    "chatglm3-6b": ("chatglm3-6b", "chatglm3-6b-chat", "chatglm3", "chatglm-3-6b"),
}


def fold(text: str) -> str:
    """A name as names are compared: lower-case, "_", "." and spaces turned into "-"."""
    return re.sub(r"[\s._]+", "-", text.strip().lower())


def split_quant_suffix(stem: str) -> tuple[str, str | None]:
    """("llama-2-7b-chat.Q4_0") -> ("llama-2-7b-chat", "Q4_0"); no suffix -> (stem, None)."""
    match = _QUANT_SUFFIX.search(stem)
    if not match or match.start() == 0:
        return stem, None
    return stem[:match.start()], match.group(0)[1:].upper()


def check_name(name: str, *, allow_paths: bool = False) -> None:
    """Refuse names that are paths or could leave the models folder."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidModelName("model: the name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelName("model: the name is too long")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise InvalidModelName("model: the name contains control characters")
    looks_like_path = ("/" in name or "\\" in name or name.startswith(("~", ".")) or ".." in name
                       or os.path.isabs(name) or re.match(r"^[a-zA-Z]:", name) is not None)
    if looks_like_path and not allow_paths:
        raise InvalidModelName(f"model: {name[:64]!r} is a path, not a model name",
                               "use a name from GET /api/v1/models; paths are refused "
                               "(the server can be started with --allow-model-paths)")
