"""Reading a GGUF file's header (metadata and tensor table) without its weights: what the
model is, its shapes and sizes, and whether the file is whole."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaserve.models.errors import GGUFFormatError
from llamaserve.models.quant_types import FTYPE_NAMES, GGML_TYPE_SIZES

_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_KEEP_ARRAY = 4096  # longer arrays (the vocabulary) are counted, not kept
# llama.cpp asserts 1 <= block_count <= this while loading (src/llama-hparams.h): an assert
# aborts the whole process, so such a header is refused before llama.cpp sees it.
LLAMA_MAX_LAYERS = 512


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

    def count(self, suffix: str) -> int:
        """An architecture key that holds a count or a size: 0 unless it is a non-negative
        integer (a damaged header may hold any value of any type there)."""
        return count_value(self.arch_key(suffix))

    @property
    def n_layers(self) -> int:
        return self.count("block_count")

    def _per_layer(self, suffix: str, n_layer: int) -> list[int]:
        value = self.arch_key(suffix)
        if isinstance(value, list) and value:
            counts = [count_value(v) for v in value[:n_layer]]
            return counts + [counts[-1]] * (n_layer - len(counts))
        return [count_value(value)] * n_layer

    def kv_bytes_per_token(self, kv_type_size: int = 2) -> int:
        """Bytes of K and V cache one token costs over all layers (F16 cache by default)."""
        n_layer, n_embd = self.n_layers, self.count("embedding_length")
        if n_layer <= 0 or n_embd <= 0:
            return 0
        heads = self._per_layer("attention.head_count", n_layer)
        heads_kv = self._per_layer("attention.head_count_kv", n_layer)
        total = 0
        for h, h_kv in zip(heads, heads_kv):
            h_kv = h_kv or h
            if h <= 0:
                continue  # a layer without attention (recurrent): no KV
            k_len = self.count("attention.key_length") or n_embd // h
            v_len = self.count("attention.value_length") or n_embd // h
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
            "n_layers": self.n_layers or None,
            "n_vocab": self.n_vocab or None,
        }


def count_value(value: Any) -> int:
    """A metadata value meant as a count or a size: itself if a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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
        if ttype not in GGML_TYPE_SIZES:
            raise GGUFFormatError(f"tensor {name[:64]!r} has an unknown type {ttype}")
        block, type_size = GGML_TYPE_SIZES[ttype]
        n = 1
        for d in shape:
            n *= d
        tensors.append(TensorInfo(name, shape, ttype, offset, n // block * type_size))
    layers = metadata.get(f"{metadata.get('general.architecture')}.block_count")
    if isinstance(layers, int) and not isinstance(layers, bool) and not 1 <= layers <= LLAMA_MAX_LAYERS:
        raise GGUFFormatError(f"corrupt: {str(layers)[:24]} layers (llama.cpp loads 1 to {LLAMA_MAX_LAYERS})")
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = 32
    data_start = -(-r.offset // alignment) * alignment
    end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if tensors and data_start + end > size:  # no tensors, no (padded) data section: a vocabulary file
        raise GGUFFormatError(f"truncated: the tensor data needs {data_start + end} bytes, "
                              f"the file has {size}")
    return GGUFInfo(path, size, version, metadata, tuple(tensors))
