"""Copies of a real GGUF whose header lies about the model: a metadata value changed, two
keys added, or one tensor's shape swapped. Written as a copy with a few header bytes patched
(the gguf package's reader finds where they are), so a copy of the 98 MB default model costs a
file copy, not a re-encoding of its weights."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import gguf

U32 = gguf.GGUFValueType.UINT32
KV_COUNT_AT = 16  # magic, version (4 bytes each), tensor count (8), then the key count (8)


class Header:
    """Where the keys and tensors of one GGUF file are."""

    def __init__(self, path: Path) -> None:
        self.reader = gguf.GGUFReader(path, "r")
        self.data = path.read_bytes()
        self.arch = self.reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
        tensors = [t.field for t in self.reader.tensors]
        self.tensors_at = tensors[0].offset  # the keys end where the tensor table starts
        self.tensors_end = tensors[-1].offset + sum(p.nbytes for p in tensors[-1].parts)

    def _value_at(self, key: str) -> int:
        field = self.reader.fields[key]
        assert field.types == [U32], f"{key} is not a uint32"
        return field.offset + sum(p.nbytes for p in field.parts[:-1])

    def with_values(self, **values: int) -> list[tuple[int, bytes]]:
        """Patches that set uint32 keys of the architecture (`block_count=99`)."""
        return [(self._value_at(f"{self.arch}.{suffix.replace('__', '.')}"), struct.pack("<I", value))
                for suffix, value in values.items()]

    def with_new_keys(self, **values: int) -> bytes:
        """The file with uint32 keys of the architecture added (the tensor data moves, aligned)."""
        added = b"".join(struct.pack("<Q", len(name)) + name + struct.pack("<II", U32, value)
                         for name, value in ((f"{self.arch}.{k}".encode(), v) for k, v in values.items()))
        head = bytearray(self.data[:self.tensors_at] + added + self.data[self.tensors_at:self.tensors_end])
        struct.pack_into("<Q", head, KV_COUNT_AT, struct.unpack_from("<Q", head, KV_COUNT_AT)[0] + len(values))
        head += bytes(-len(head) % self.reader.alignment)
        return bytes(head) + self.data[self.reader.data_offset:]

    def with_swapped_shape(self, tensor: str) -> list[tuple[int, bytes]]:
        """A patch that swaps one 2-D tensor's two dimensions (its size unchanged)."""
        field = next(t.field for t in self.reader.tensors if t.name == tensor)
        dims_at = field.offset + sum(p.nbytes for p in field.parts[:3])  # name length, name, n_dims
        rows, cols = struct.unpack_from("<2Q", self.data, dims_at)
        return [(dims_at, struct.pack("<2Q", cols, rows))]


def damaged_copies(src: Path, folder: Path) -> dict[str, Path]:
    """The damaged headers of issue 22, each as `folder/<name>.gguf`: {name: path}."""
    header = Header(src)
    copies: dict[str, bytes | list[tuple[int, bytes]]] = {
        "experts-over-count": header.with_new_keys(expert_count=2, expert_used_count=8),
        "head-count-kv-0": header.with_values(attention__head_count_kv=0),
        "head-count-0": header.with_values(attention__head_count=0),
        "head-count-7": header.with_values(attention__head_count=7),
        "block-count-99": header.with_values(block_count=99),
        "embedding-length-1": header.with_values(embedding_length=1),
        "rope-dimensions-4096": header.with_values(rope__dimension_count=4096),
        "tensor-shape-swapped": header.with_swapped_shape("blk.0.attn_k.weight"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, change in copies.items():
        out[name] = path = folder / f"{name}.gguf"
        if isinstance(change, bytes):
            path.write_bytes(change)
            continue
        shutil.copyfile(src, path)
        with path.open("r+b") as f:
            for offset, patch in change:
                f.seek(offset)
                f.write(patch)
    return out
