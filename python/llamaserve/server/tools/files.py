"""The file tools: read_file, write_file, edit_file (exact, unique, non-overlapping
replacements). Blocking: they run in a worker thread. Failures a model can act on are results
{"error": ...}, as llama-server answers them."""
from __future__ import annotations

import base64
import os
import stat
from typing import Any

from llamaserve.server.tools.params import ToolParamError, boolean, integer, resolve, string

READ_MAX = 16 * 1024  # characters of text read_file returns
READ_MAX_BASE64 = 32 * 1024 * 1024


def read_file(params: dict[str, Any]) -> dict[str, Any]:
    path = string(params, "path")
    start_line = integer(params, "start_line", 1)
    end_line = integer(params, "end_line", -1)
    append_loc = boolean(params, "append_loc")
    full = resolve(params, path)
    try:
        info = os.stat(full)
    except OSError:
        return {"error": f"cannot stat file: {path}"}
    if not stat.S_ISREG(info.st_mode):  # a device or a pipe could be read forever
        return {"error": f"not a regular file: {path}"}
    size = info.st_size
    if params.get("resp_type") == "base64":
        if size > READ_MAX_BASE64:
            return {"error": f"file too large ({size} bytes, max {READ_MAX_BASE64})"}
        try:
            with open(full, "rb") as f:
                data = f.read(READ_MAX_BASE64 + 1)
        except OSError:
            return {"error": f"failed to open file: {path}"}
        return {"base64": base64.b64encode(data).decode(), "size_bytes": len(data)}
    ranged = "start_line" in params or "end_line" in params
    if not ranged and size > READ_MAX:
        return {"error": f"file too large ({size} bytes, max {READ_MAX}). Use start_line/end_line to read a portion."}
    out: list[str] = []
    length = 0
    try:
        with open(full, encoding="utf-8", errors="replace", newline="") as f:
            for lineno, line in enumerate(f, 1):
                if lineno < start_line:
                    continue
                if end_line >= 0 and lineno > end_line:
                    break
                line = line.rstrip("\n")
                piece = f"{lineno}\u2192{line}\n" if append_loc else line + "\n"
                if length + len(piece) > READ_MAX:
                    out.append("[output truncated]")
                    break
                out.append(piece)
                length += len(piece)
    except OSError:
        return {"error": f"failed to open file: {path}"}
    return {"plain_text_response": "".join(out)}


def write_file(params: dict[str, Any]) -> dict[str, Any]:
    path = string(params, "path")
    content = string(params, "content")
    full = resolve(params, path)
    if os.path.exists(full) and not os.path.isfile(full):
        return {"error": f"not a regular file: {path}"}
    try:
        os.makedirs(os.path.dirname(full) or ".", exist_ok=True)
        with open(full, "w", encoding="utf-8", newline="") as f:
            f.write(content)
    except OSError:
        return {"error": f"failed to write file: {path}"}
    return {"result": "file written successfully", "path": path, "bytes": len(content.encode())}


def edit_file(params: dict[str, Any]) -> dict[str, Any]:
    path = string(params, "path")
    edits = params.get("edits")
    if not isinstance(edits, list) or not edits:
        return {"error": "\"edits\" must be a non-empty array"}
    pairs: list[tuple[str, str]] = []
    for i, edit in enumerate(edits):
        if not isinstance(edit, dict):
            raise ToolParamError(f"edits[{i}] must be an object with old_text and new_text")
        old, new = string(edit, "old_text"), string(edit, "new_text")
        if not old:
            return {"error": f"edits[{i}].old_text must not be empty"}
        pairs.append((old, new))
    full = resolve(params, path)
    if not os.path.isfile(full):
        return {"error": f"failed to open file: {path}"}
    try:
        with open(full, encoding="utf-8", newline="") as f:
            content = f.read()
    except (OSError, UnicodeDecodeError):
        return {"error": f"failed to open file: {path}"}
    spans: list[tuple[int, int, int]] = []  # (start, end, edit index), against the original content
    for i, (old, _) in enumerate(pairs):
        count = content.count(old)
        if count == 0:
            return {"error": f"could not find edits[{i}].old_text in {path}, it must match the file's current "
                             "content exactly"}
        if count > 1:
            return {"error": f"found {count} occurrences of edits[{i}].old_text in {path}, it must be unique"}
        start = content.find(old)
        spans.append((start, start + len(old), i))
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:]):
        if start_b < end_a:
            first, second = sorted((a, b))
            return {"error": f"edits[{first}] and edits[{second}] overlap in {path}; merge them into one edit or "
                             "target disjoint regions"}
    pieces, at = [], 0
    for start, end, i in spans:
        pieces += [content[at:start], pairs[i][1]]
        at = end
    pieces.append(content[at:])
    edited = "".join(pieces)
    if edited == content:
        return {"error": "no changes made: the replacement(s) produced identical content"}
    try:
        with open(full, "w", encoding="utf-8", newline="") as f:
            f.write(edited)
    except OSError:
        return {"error": f"failed to write file: {path}"}
    return {"result": "file edited successfully", "path": path, "edits_applied": len(pairs)}
