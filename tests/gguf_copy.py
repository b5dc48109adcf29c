"""Copies of a real GGUF with other metadata (the default weights with another family's chat
template), written with the gguf package's own metadata copier."""
from __future__ import annotations

import os
from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata


def with_chat_template(src: str | os.PathLike[str], dst: str | os.PathLike[str], template: str) -> Path:
    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer = gguf.GGUFWriter(dst, arch=arch.contents(), endianess=reader.endianess)
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, remove_metadata=[])
    return Path(dst)
