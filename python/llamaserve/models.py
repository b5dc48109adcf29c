"""The model registry: which GGUF files there are, what they are, and what they cost.

- Discovery: the *.gguf files of a models folder (default ~/.cache/llamaserve/models) plus the
  embedded default model, each read from its header only (architecture, name, parameter
  count, quantization, context length, chat template, layer shapes), never its weights. A
  broken or truncated file is listed with its error; it never breaks the listing.
- Names: a model's id is its lower-case file stem (`llama-2-7b-chat.q4_0`). Files that differ
  only by a quantization suffix are variants of one model named by the stem without it
  (`llama-2-7b-chat`). The spec's six names (`qwen-7b-chat`, `qwen-14b-chat`, `gemma-7b`,
  `gemma-2b`, `llama-2-7b-chat`, `chatglm3-6b`) are built-in aliases that resolve, case-
  insensitively, to files named by the usual conventions. An optional TOML file maps more
  names to files, with per-model defaults. A name is never a path: `../x` and `/x` are refused
  (InvalidModelName) unless paths are explicitly allowed.
- Quantization: `quantize()` runs llama.cpp's quantizer into a cache, reused next time, and
  refuses to requantize an already-quantized file unless asked to.
- Memory: `estimate_memory()` prices a model before loading it (weights + KV cache + compute
  buffers), which is what a memory budget needs; `LruBudget` picks what to evict.

Models config (TOML), every key optional:

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

import hashlib
import logging
import os
import re
import struct
import threading
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger("llamaserve.models")

DEFAULT_MODELS_DIR = Path("~/.cache/llamaserve/models")
DEFAULT_QUANTIZE_CACHE = Path("~/.cache/llamaserve/quantized")
MAX_NAME_LENGTH = 256


# -- errors -------------------------------------------------------------------------------

class RegistryError(Exception):
    """Base of the registry's errors; `status` is the HTTP status a server should answer."""

    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidModelName(RegistryError):
    """The name is a path, or could escape the models folder."""


class ModelNotFound(RegistryError):
    status = 404
    code = "MODEL_NOT_FOUND"


class ModelFileError(RegistryError):
    """The model's file is not a usable GGUF (truncated, corrupt, unreadable)."""

    status = 422
    code = "MODEL_FILE_INVALID"


class UnknownQuantization(RegistryError):
    """The quantization name is not one llama.cpp's quantizer knows."""


class RequantizeRefused(RegistryError):
    """The only source is already quantized and requantizing was not allowed."""


class ModelsConfigError(ValueError):
    """The models config file is malformed (raised at start-up, not per request)."""


# -- quantization types -------------------------------------------------------------------

# llama_ftype values (vendor/llama.cpp/include/llama.h) that the quantizer can produce.
QUANT_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "BF16": 32,
    "Q8_0": 7, "Q6_K": 18,
    "Q5_K_M": 17, "Q5_K_S": 16, "Q5_1": 9, "Q5_0": 8,
    "Q4_K_M": 15, "Q4_K_S": 14, "Q4_1": 3, "Q4_0": 2,
    "Q3_K_L": 13, "Q3_K_M": 12, "Q3_K_S": 11,
    "Q2_K": 10,
}
# Every llama_ftype name, for naming files quantized elsewhere.
FTYPE_NAMES: dict[int, str] = {v: k for k, v in QUANT_TYPES.items()} | {
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}
UNQUANTIZED = frozenset({"F32", "F16", "BF16"})
# Source preference when quantizing: the most precise file first.
_PRECISION_ORDER = ["F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_K_S", "Q5_0",
                    "Q4_K_M", "Q4_1", "Q4_K_S", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]
# Which variant a bare model name loads: the usual serving trade-off first.
_DEFAULT_ORDER = ["Q4_K_M", "Q5_K_M", "Q4_K_S", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0",
                  "Q5_1", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "F16", "BF16", "F32"]
# ggml tensor type -> (block size, bytes per block), for sizes without loading.
_GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 110), 20: (256, 82),
    21: (256, 136), 22: (256, 50), 23: (32, 18), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),
    28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}
# The ggml tensor type a llama_ftype mostly uses (for estimating a quantized file's size).
_FTYPE_TENSOR_TYPE = {0: 0, 1: 1, 32: 30, 7: 8, 18: 14, 17: 13, 16: 13, 9: 7, 8: 6, 15: 12, 14: 12,
                      3: 3, 2: 2, 13: 11, 12: 11, 11: 11, 10: 10}
_QUANT_SUFFIX = re.compile(
    r"[._\-](?:(?:i?q\d(?:_\d|_k(?:_[a-z]+)?|_[a-z]+)*)|f16|f32|bf16|fp16|fp32|mxfp4(?:_moe)?)$",
    re.IGNORECASE)
_SPLIT_SUFFIX = re.compile(r"-(\d{5})-of-(\d{5})$")


def quant_name(name: str) -> str:
    """The canonical quantization name ("q4_k_m" -> "Q4_K_M"); UnknownQuantization listing
    the valid names otherwise."""
    if isinstance(name, str):
        canon = name.strip().upper().replace("-", "_")
        if canon in QUANT_TYPES:
            return canon
    valid = ", ".join(n.lower() for n in QUANT_TYPES)
    raise UnknownQuantization(f"quantization: unknown type {str(name)[:32]!r}", f"valid types: {valid}")


# -- reading a GGUF header ----------------------------------------------------------------

_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_KEEP_ARRAY = 4096  # longer arrays (the vocabulary) are counted, not kept


class GGUFFormatError(Exception):
    pass


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep: its item type and length."""
    item_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 first
    type: int
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about a model."""
    path: Path
    file_size: int
    version: int
    metadata: dict[str, Any] = field(repr=False)
    tensors: tuple[TensorInfo, ...] = field(repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture") or "")

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return str(value) if value else None

    @property
    def n_params(self) -> int:
        """The parameter count: summed from the tensor shapes (what llama.cpp reports)."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def weights_size(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def file_type(self) -> int | None:
        value = self.metadata.get("general.file_type")
        return int(value) if isinstance(value, int) else None

    @property
    def quantization(self) -> str:
        """The llama_ftype name (Q4_K_M, F16, ...); guessed from the most common matrix type
        when the file does not say."""
        ft = self.file_type
        if ft is not None and ft in FTYPE_NAMES:
            return FTYPE_NAMES[ft]
        counts: dict[int, int] = {}
        for t in self.tensors:
            if len(t.shape) >= 2:
                counts[t.type] = counts.get(t.type, 0) + t.n_elements
        if not counts:
            return "unknown"
        top = max(counts, key=counts.__getitem__)
        by_tensor = {0: "F32", 1: "F16", 30: "BF16", 8: "Q8_0", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0",
                     7: "Q5_1", 14: "Q6_K", 12: "Q4_K_M", 13: "Q5_K_M", 11: "Q3_K_M", 10: "Q2_K"}
        return by_tensor.get(top, f"type{top}")

    @property
    def context_length(self) -> int | None:
        value = self.arch_key("context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value else None

    @property
    def n_vocab(self) -> int:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayInfo):
            return tokens.length
        if isinstance(tokens, list):
            return len(tokens)
        value = self.arch_key("vocab_size")
        return int(value) if isinstance(value, int) else 0

    def _per_layer(self, suffix: str, default: int, n_layer: int) -> list[int]:
        value = self.arch_key(suffix)
        if isinstance(value, list) and value:
            return [int(v) for v in value[:n_layer]] + [int(value[-1])] * max(0, n_layer - len(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [int(value)] * n_layer
        return [default] * n_layer

    def kv_bytes_per_token(self, kv_type_size: int = 2) -> int:
        """Bytes of K and V cache one token costs over all layers (F16 cache by default)."""
        n_layer = int(self.arch_key("block_count", 0) or 0)
        n_embd = int(self.arch_key("embedding_length", 0) or 0)
        if n_layer <= 0 or n_embd <= 0:
            return 0
        heads = self._per_layer("attention.head_count", 0, n_layer)
        heads_kv = self._per_layer("attention.head_count_kv", 0, n_layer)
        total = 0
        for h, h_kv in zip(heads, heads_kv):
            h_kv = h_kv or h
            if h <= 0:
                continue  # a layer without attention (recurrent): no KV
            k_len = int(self.arch_key("attention.key_length", n_embd // h) or n_embd // h)
            v_len = int(self.arch_key("attention.value_length", n_embd // h) or n_embd // h)
            total += h_kv * (k_len + v_len)
        return total * kv_type_size

    def summary(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture or None,
            "model_name": self.name,
            "n_params": self.n_params,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "chat_template": self.chat_template is not None,
            "n_layers": self.arch_key("block_count"),
            "n_vocab": self.n_vocab or None,
        }


def read_gguf_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse a GGUF header (metadata and tensor table) without touching the weights, and
    check that the file holds every tensor's data. GGUFFormatError says what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            return _parse(path, f, size)
    except OSError as exc:
        raise GGUFFormatError(f"cannot read the file: {exc.strerror or exc}") from None
    except struct.error:
        raise GGUFFormatError("truncated: the header ends early") from None


class _Reader:
    def __init__(self, f: Any, size: int) -> None:
        self.f = f
        self.size = size
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # offset in buf

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _need(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            return
        if self.offset + n > self.size:
            raise GGUFFormatError("truncated: the header ends early")
        rest = self.buf[self.pos:]
        self.base += self.pos
        self.buf = rest + self.f.read(max(n - len(rest), 1 << 20))
        self.pos = 0
        if len(self.buf) < n:
            raise GGUFFormatError("truncated: the header ends early")

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self._need(n)
        value = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value[0] if len(value) == 1 else value

    def raw(self, n: int) -> bytes:
        if n > self.size:
            raise GGUFFormatError("corrupt: a length is larger than the file")
        self._need(n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        if self.offset + n > self.size:
            raise GGUFFormatError("truncated: the header ends early")
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.base, self.pos = self.offset + n, 0
            self.buf = b""
            self.f.seek(self.base)

    def string(self) -> str:
        return self.raw(self.unpack("<Q")).decode("utf-8", errors="replace")


def _value(r: _Reader, vtype: int, keep: bool = True) -> Any:
    if vtype in _SCALAR_FORMATS:
        return r.unpack(_SCALAR_FORMATS[vtype])
    if vtype == _STRING:
        return r.string()
    if vtype == _ARRAY:
        item_type, n = r.unpack("<IQ")
        if n > r.size:
            raise GGUFFormatError("corrupt: an array is longer than the file")
        if n > _MAX_KEEP_ARRAY or not keep:
            if item_type in _SCALAR_FORMATS:
                r.skip(n * struct.calcsize(_SCALAR_FORMATS[item_type]))
            elif item_type == _STRING:
                for _ in range(n):
                    r.skip(r.unpack("<Q"))
            else:
                for _ in range(n):
                    _value(r, item_type, keep=False)
            return ArrayInfo(item_type, n)
        return [_value(r, item_type) for _ in range(n)]
    raise GGUFFormatError(f"corrupt: unknown metadata value type {vtype}")


def _parse(path: Path, f: Any, size: int) -> GGUFInfo:
    r = _Reader(f, size)
    if size < 24 or r.raw(4) != b"GGUF":
        raise GGUFFormatError("not a GGUF file (bad magic)")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = r.unpack("<QQ")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise GGUFFormatError("corrupt: implausible tensor or key count")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = _value(r, r.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > 8:
            raise GGUFFormatError(f"corrupt: tensor {name[:64]!r} has {n_dims} dimensions")
        shape = tuple(r.unpack("<Q") for _ in range(n_dims))
        ttype, offset = r.unpack("<IQ")
        if ttype not in _GGML_TYPE_SIZES:
            raise GGUFFormatError(f"tensor {name[:64]!r} has an unknown type {ttype}")
        block, type_size = _GGML_TYPE_SIZES[ttype]
        n = 1
        for d in shape:
            n *= d
        tensors.append(TensorInfo(name, shape, ttype, offset, n // block * type_size))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = 32
    data_start = -(-r.offset // alignment) * alignment
    end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if data_start + end > size:
        raise GGUFFormatError(f"truncated: the tensor data needs {data_start + end} bytes, "
                              f"the file has {size}")
    return GGUFInfo(path, size, version, metadata, tuple(tensors))


# -- memory -------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "compute": self.compute,
                "total": self.total}


def estimate_memory(info: GGUFInfo, n_ctx: int, n_parallel: int, n_batch: int = 512) -> MemoryEstimate:
    """What loading costs: the weights, an F16 KV cache of n_ctx tokens for each of the
    n_parallel slots (the engine gives every slot its whole window), and llama.cpp's compute
    buffers (activations of a full ubatch, plus one row of logits per slot: the engine
    reserves no more outputs than that)."""
    n_ubatch = min(n_batch, 512)
    cells = -(-n_ctx // 256) * 256  # llama.cpp rounds each slot's cache up to 256 cells
    kv = info.kv_bytes_per_token() * cells * n_parallel
    n_embd = int(info.arch_key("embedding_length", 0) or 0)
    ff = info.arch_key("feed_forward_length", 0)
    n_ff = max(ff) if isinstance(ff, list) and ff else int(ff or 0)
    compute = 4 * n_ubatch * (4 * n_embd + 3 * n_ff) + 4 * n_parallel * info.n_vocab
    return MemoryEstimate(info.weights_size, kv, compute)


def parse_size(text: str | int | float) -> int:
    """Bytes from "8GB", "512MiB", "1.5G", "100000" (decimal and binary units both 1024-based
    for G/M/K, as memory is)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a size must not be negative")
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read {str(text)[:32]!r} as a size (like 8GB or 512MB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit)) if unit else int(number)


def gigabytes(n_bytes: float) -> str:
    """The spec's size format: "4.2GB"."""
    return f"{n_bytes / 2**30:.1f}GB"


def format_size(n_bytes: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f}{unit}"
    return f"{int(n_bytes)}B"


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


# -- names --------------------------------------------------------------------------------

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


def _fold(text: str) -> str:
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


# -- the registry -------------------------------------------------------------------------

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


@dataclass
class ModelEntry:
    """One GGUF file the registry knows."""
    id: str
    path: Path
    base: str  # the model this file is a variant of
    quantization: str | None  # from the header (or the file name when the header is bad)
    info: GGUFInfo | None = field(default=None, repr=False)
    error: str | None = None
    aliases: tuple[str, ...] = ()
    settings: ModelSettings = field(default_factory=ModelSettings)
    is_default: bool = False
    source: str = "models_dir"  # models_dir | config | default | path

    @property
    def ok(self) -> bool:
        return self.info is not None and self.error is None

    @property
    def file_size(self) -> int:
        if self.info is not None:
            return self.info.file_size
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.id,
            "format": "gguf",
            "file": self.path.name,
            "size": gigabytes(self.file_size),
            "size_bytes": self.file_size,
            "quantization": self.quantization,
            "aliases": list(self.aliases),
            "base": self.base,
        }
        if self.info is not None:
            out.update(self.info.summary())
        if self.error is not None:
            out["error"] = self.error
        return out

    def estimate(self, n_ctx: int, n_parallel: int, n_batch: int = 512) -> MemoryEstimate:
        if self.info is None:
            return MemoryEstimate(self.file_size, 0, 0)
        return estimate_memory(self.info, n_ctx, n_parallel, n_batch)


@dataclass(frozen=True)
class _ConfiguredModel:
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


def _settings(where: str, table: Any, extra: Iterable[str] = ()) -> ModelSettings:
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


class ModelRegistry:
    """The GGUF files a server may load, by name. Thread-safe; cheap to rescan (headers are
    cached by file size and modification time)."""

    def __init__(self, models_dir: str | os.PathLike[str] | None = None, *,
                 config_file: str | os.PathLike[str] | None = None,
                 include_default: bool = True, default_model: str | os.PathLike[str] | None = None,
                 allow_paths: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> None:
        config = load_models_config(config_file) if config_file else {}
        folder = models_dir if models_dir is not None else config.get("models_dir")
        self.models_dir = Path(folder or DEFAULT_MODELS_DIR).expanduser()
        self.cache_dir = Path(cache_dir or DEFAULT_QUANTIZE_CACHE).expanduser()
        self.allow_paths = allow_paths
        self.include_default = include_default
        # what "default" names: a file or a model name (the server's --model); None: the
        # embedded default model
        self._default_model = default_model
        self.defaults = _settings("defaults", config.get("defaults", {}))
        self._configured = self._read_models(config.get("models", {}))
        self._lock = threading.RLock()
        self._info_cache: dict[Path, tuple[tuple[int, int], GGUFInfo | None, str | None]] = {}
        self._entries: list[ModelEntry] = []
        self._scanned = False

    def _read_models(self, models: Any) -> list[_ConfiguredModel]:
        if not isinstance(models, dict):
            raise ModelsConfigError("models: must be a table of models")
        out = []
        for name, table in models.items():
            where = f"models.{name}"
            settings = _settings(where, table, extra=("file", "path", "aliases"))
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
            out.append(_ConfiguredModel(name.lower(), path, settings, tuple(a.lower() for a in aliases)))
        return out

    # -- scanning ---------------------------------------------------------------------------

    def default_path(self) -> Path | None:
        """The embedded default model's file (None without the package or include_default)."""
        if not self.include_default:
            return None
        try:
            from llamaserve.default_model import default_model_path

            return default_model_path()
        except Exception as exc:  # noqa: BLE001 - no default model package: list without it
            log.debug("no default model: %s", exc)
            return None

    def _info(self, path: Path) -> tuple[GGUFInfo | None, str | None]:
        try:
            st = path.stat()
            signature = (st.st_size, st.st_mtime_ns)
        except OSError as exc:
            return None, f"cannot read the file: {exc.strerror or exc}"
        cached = self._info_cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1], cached[2]
        try:
            info, error = read_gguf_info(path), None
        except GGUFFormatError as exc:
            info, error = None, str(exc)
        self._info_cache[path] = (signature, info, error)
        return info, error

    def _entry(self, path: Path, source: str, *, id_: str | None = None) -> ModelEntry:
        stem = path.name[:-5] if path.name.lower().endswith(".gguf") else path.stem
        stem = _SPLIT_SUFFIX.sub("", stem)
        base, suffix_quant = split_quant_suffix(stem)
        info, error = self._info(path)
        quant = info.quantization if info is not None else suffix_quant
        return ModelEntry(id=(id_ or stem).lower(), path=path, base=_fold(base), quantization=quant,
                          info=info, error=error, source=source)

    def _files(self) -> list[Path]:
        folder = self.models_dir
        if not folder.is_dir():
            return []
        out = []
        try:
            children = sorted(folder.iterdir())
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            return []
        for p in children:
            if not p.name.lower().endswith(".gguf") or p.name.startswith("."):
                continue
            split = _SPLIT_SUFFIX.search(p.name[:-5])
            if split and int(split.group(1)) != 1:
                continue  # later shards of a split model load through the first one
            try:
                if p.is_file():
                    out.append(p)
            except OSError:
                continue
        return out

    def scan(self) -> list[ModelEntry]:
        """Re-read the folder (unchanged files are not re-parsed) and return the entries."""
        with self._lock:
            entries: list[ModelEntry] = []
            seen_paths: set[Path] = set()
            for cm in self._configured:
                path = cm.file if cm.file.is_absolute() else self.models_dir / cm.file
                entry = self._entry(path, "config", id_=cm.name)
                if not path.is_file() and entry.error is None:
                    entry.error = "file not found"
                entry.aliases = cm.aliases
                entry.settings = cm.settings
                entries.append(entry)
                seen_paths.add(path.absolute())
            for p in self._files():
                if p.absolute() in seen_paths:
                    continue
                entries.append(self._entry(p, "models_dir"))
                seen_paths.add(p.absolute())
            embedded = self.default_path()
            if embedded is not None:
                self._listed(entries, embedded, "default")
            target = self._default_entry(entries, embedded)
            if target is not None:
                target.is_default = True
                target.aliases = tuple(dict.fromkeys((*target.aliases, "default")))
            self._dedupe_ids(entries)
            self._assign_spec_aliases(entries)
            self._entries = entries
            self._scanned = True
            return list(entries)

    def _listed(self, entries: list[ModelEntry], path: Path, source: str) -> ModelEntry:
        """The entry of `path` (the same file, or a link to it), added when missing."""
        found = next((e for e in entries if e.path.absolute() == path.absolute()), None)
        if found is None:
            real = _realpath(path)
            found = next((e for e in entries if _realpath(e.path) == real), None)
        if found is None:
            found = self._entry(path, source)
            entries.append(found)
        return found

    def _default_entry(self, entries: list[ModelEntry], embedded: Path | None) -> ModelEntry | None:
        wanted = self._default_model
        if wanted is None:
            return self._listed(entries, embedded, "default") if embedded is not None else None
        path = Path(wanted).expanduser()
        if path.is_file():
            return self._listed(entries, path, "path")
        name = str(wanted).strip().lower()
        return next((e for e in entries if name in e.names()), None) or next(
            (e for e in entries if e.base == _fold(name)), None)

    @staticmethod
    def _dedupe_ids(entries: list[ModelEntry]) -> None:
        seen: dict[str, int] = {}
        for e in entries:
            if e.id in seen:
                seen[e.id] += 1
                e.id = f"{e.id}-{seen[e.id]}"
            else:
                seen[e.id] = 1

    @staticmethod
    def _assign_spec_aliases(entries: list[ModelEntry]) -> None:
        taken = {n for e in entries for n in e.names()}
        for alias, bases in SPEC_ALIASES.items():
            if alias in taken:
                continue
            group = _best_group(entries, bases)
            if group:
                chosen = _preferred(group)
                chosen.aliases = (*chosen.aliases, alias)

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            if not self._scanned:
                return self.scan()
            return list(self._entries)

    def listing(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self.scan()]

    # -- lookup -----------------------------------------------------------------------------

    def resolve(self, name: str, *, rescan: bool = True) -> ModelEntry:
        """The entry a name means: a configured name or alias, a file id, "default", a
        model's base name (its preferred variant), or one of the spec's names. Paths are
        refused unless allowed. ModelNotFound otherwise."""
        check_name(name, allow_paths=self.allow_paths)
        entries = self.scan() if rescan else self.entries()
        wanted = name.strip().lower()
        for e in entries:
            if wanted in e.names():
                return e
        folded = _fold(wanted)
        group = [e for e in entries if e.base == folded]
        if not group:
            base, _ = split_quant_suffix(folded)
            group = [e for e in entries if _fold(e.id) == folded or (e.base == base and base != folded)]
            if len(group) > 1:
                group = [e for e in group if _fold(e.id) == folded] or group
        if not group and folded in SPEC_ALIASES:
            group = _best_group(entries, SPEC_ALIASES[folded])
        if not group:
            group = [e for e in entries if e.info is not None and e.info.name and _fold(e.info.name) == folded]
        if group:
            return _preferred(group)
        if self.allow_paths:
            path = Path(name).expanduser()
            if path.is_file():
                return self._entry(path.absolute(), "path")
        raise ModelNotFound(f"model: no model named {name[:64]!r}", "GET /api/v1/models lists the models")

    def variants(self, entry: ModelEntry) -> list[ModelEntry]:
        """The files of the same model (same base name), the entry itself included."""
        out = [e for e in self.entries() if e.base == entry.base and e.source != "default"]
        if entry not in out:
            out.insert(0, entry)
        return out

    def settings_for(self, entry: ModelEntry) -> ModelSettings:
        return entry.settings.merged(self.defaults)

    def quantized_path(self, entry: ModelEntry, quantization: str) -> Path:
        """Where the cache keeps `entry` quantized to `quantization` (source path, size and
        mtime are in the name, so a changed source never reuses a stale result)."""
        st = entry.path.stat()
        digest = hashlib.sha256(f"{entry.path.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        return self.cache_dir / f"{entry.base}.{digest[:12]}.{quantization}.gguf"

    def for_quantization(self, entry: ModelEntry, quantization: str, *, allow_requantize: bool = False
                         ) -> tuple[ModelEntry, str | None]:
        """The file to load for `entry` at `quantization`: (entry of a variant of that type, None),
        or (the source to quantize from, the type) when the cache must make it first; a
        cached result counts as a variant. UnknownQuantization, RequantizeRefused."""
        qtype = quant_name(quantization)
        variants = [e for e in self.variants(entry) if e.ok]
        for e in [entry, *variants]:
            if e.ok and e.quantization == qtype:
                return e, None
        sources = sorted(variants or [entry], key=_precision_rank)
        source = sources[0]
        if not source.ok:
            raise ModelFileError(f"model: {entry.id!r} cannot be read: {source.error}")
        cached = self.quantized_path(source, qtype)
        if cached.is_file():
            info, error = self._info(cached)
            if info is not None:
                return self._cache_entry(entry, cached, qtype, info), None
        if source.quantization not in UNQUANTIZED and not allow_requantize:
            raise RequantizeRefused(
                f"quantization: {entry.id!r} has no unquantized file (the best is "
                f"{source.quantization}); requantizing {source.quantization} to {qtype} compounds "
                f"the rounding error", 'send "allow_requantize": true to quantize it anyway')
        return source, qtype

    def quantize(self, entry: ModelEntry, quantization: str, *, allow_requantize: bool = False,
                 progress: Callable[[float], None] | None = None, n_threads: int = 0) -> ModelEntry:
        """The entry of `entry` at `quantization`, quantizing into the cache if needed."""
        target, qtype = self.for_quantization(entry, quantization, allow_requantize=allow_requantize)
        if qtype is None:
            return target
        out = quantize(target.path, qtype, self.quantized_path(target, qtype),
                       allow_requantize=allow_requantize, progress=progress, n_threads=n_threads)
        info, error = self._info(out)
        if info is None:
            raise ModelFileError(f"quantization: the quantized file is not readable: {error}")
        return self._cache_entry(entry, out, qtype, info)

    @staticmethod
    def _cache_entry(entry: ModelEntry, path: Path, qtype: str, info: GGUFInfo) -> ModelEntry:
        """A quantized file of the cache: named like a variant would be (<model>.<type>)."""
        return ModelEntry(id=f"{entry.base}.{qtype.lower()}", path=path, base=entry.base, quantization=qtype,
                          info=info, aliases=entry.aliases, settings=entry.settings, source="cache")

    def entry_for_path(self, path: str | os.PathLike[str]) -> ModelEntry:
        """The entry of a file: the listed one when the registry lists it, else a new one
        (for files the operator named directly, like the server's --model)."""
        path = Path(path)
        real = _realpath(path)
        for e in self.entries():
            if e.path == path or _realpath(e.path) == real:
                return e
        return self._entry(path, "path")


def _realpath(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _precision_rank(e: ModelEntry) -> int:
    q = e.quantization or ""
    return _PRECISION_ORDER.index(q) if q in _PRECISION_ORDER else len(_PRECISION_ORDER)


def _preferred(group: list[ModelEntry]) -> ModelEntry:
    """The variant a bare model name loads: a healthy file first, then the usual serving
    quantization order."""
    def rank(e: ModelEntry) -> tuple[int, int, str]:
        q = e.quantization or ""
        return (0 if e.ok else 1, _DEFAULT_ORDER.index(q) if q in _DEFAULT_ORDER else len(_DEFAULT_ORDER), e.id)
    return min(group, key=rank)


def _best_group(entries: list[ModelEntry], bases: tuple[str, ...]) -> list[ModelEntry]:
    for base in bases:
        group = [e for e in entries if e.base == base and e.source != "default"]
        if group:
            return group
    return []


# -- quantizing ---------------------------------------------------------------------------

_quantize_locks: dict[Path, threading.Lock] = {}
_quantize_locks_guard = threading.Lock()


def expected_quantized_size(info: GGUFInfo, qtype: str) -> int:
    """About how large the quantized file will be (for progress)."""
    ggml_type = _FTYPE_TENSOR_TYPE.get(QUANT_TYPES[qtype], 1)
    block, type_size = _GGML_TYPE_SIZES[ggml_type]
    total = 0
    for t in info.tensors:
        if len(t.shape) >= 2 and t.shape[0] % block == 0:
            total += t.n_elements // block * type_size
        else:
            total += t.n_bytes
    return total + (info.file_size - info.weights_size)


def quantize(src: str | os.PathLike[str], quantization: str, dst: str | os.PathLike[str], *,
             allow_requantize: bool = False, progress: Callable[[float], None] | None = None,
             n_threads: int = 0, poll_interval: float = 0.1) -> Path:
    """Quantize `src` to `dst` with llama.cpp's quantizer (reusing `dst` if it is already a
    readable GGUF). The work goes to a temporary file renamed into place at the end, so a
    failed or interrupted run leaves nothing half-written. `progress(fraction)` is called
    from a watcher thread as the output grows, and with 1.0 at the end."""
    from llamaserve import _native
    from llamaserve.errors import ModelLoadError

    qtype = quant_name(quantization)
    src, dst = Path(src), Path(dst)
    try:
        info = read_gguf_info(src)
    except GGUFFormatError as exc:
        raise ModelFileError(f"quantize: {src.name} is not a usable GGUF: {exc}") from None
    if info.quantization not in UNQUANTIZED and not allow_requantize:
        raise RequantizeRefused(
            f"quantization: {src.name} is already quantized ({info.quantization}); requantizing to "
            f"{qtype} compounds the rounding error",
            'allow requantizing to do it anyway ("allow_requantize": true; --allow-requantize)')
    with _quantize_locks_guard:
        lock = _quantize_locks.setdefault(dst.absolute(), threading.Lock())
    with lock:
        if dst.is_file():
            try:
                read_gguf_info(dst)
                if progress:
                    progress(1.0)
                return dst
            except GGUFFormatError:
                dst.unlink(missing_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.partial")
        expected = max(1, expected_quantized_size(info, qtype))
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_interval):
                try:
                    size = tmp.stat().st_size
                except OSError:
                    size = 0
                if progress:
                    progress(min(0.99, size / expected))

        watcher = threading.Thread(target=watch, name="llamaserve-quantize-progress", daemon=True)
        if progress:
            progress(0.0)
            watcher.start()
        try:
            _native.quantize(str(src), str(tmp), QUANT_TYPES[qtype], allow_requantize, n_threads)
            os.replace(tmp, dst)
        except ModelLoadError as exc:
            raise ModelFileError(f"quantize: {str(exc).replace(str(tmp), dst.name)}") from None
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()
            tmp.unlink(missing_ok=True)
        if progress:
            progress(1.0)
        return dst


def registry_from_options(models_dir: str | None = None, models_config: str | None = None, *,
                          allow_paths: bool = False, cache_dir: str | None = None,
                          include_default: bool = True) -> ModelRegistry:
    return ModelRegistry(models_dir, config_file=models_config, allow_paths=allow_paths,
                         cache_dir=cache_dir, include_default=include_default)


__all__ = [
    "DEFAULT_MODELS_DIR", "GGUFFormatError", "GGUFInfo", "InvalidModelName", "LruBudget",
    "MemoryEstimate", "ModelEntry", "ModelFileError", "ModelNotFound", "ModelRegistry",
    "ModelSettings", "ModelsConfigError", "QUANT_TYPES", "RegistryError", "RequantizeRefused",
    "Resident", "SPEC_ALIASES", "UnknownQuantization", "check_name", "estimate_memory",
    "format_size", "parse_size", "quant_name", "quantize", "read_gguf_info",
]

