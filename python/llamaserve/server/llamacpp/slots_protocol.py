"""llama-server's POST /slots/ID?action=save|restore|erase: what a request asks, checked, and the
answers' shapes. The files live in --slot-save-path, named by a bare file name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaserve.results import SlotFile
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.protocol_values import json_object

ACTIONS = ("save", "restore", "erase")
MAX_NAME = 255


@dataclass(frozen=True)
class SlotAction:
    slot: int
    action: str
    path: Path | None  # the file, for save and restore


def parse(slot: str, action: str | None, body: Any, folder: str | None) -> SlotAction:
    if not slot.isdigit() or len(slot) > 6:
        raise invalid("id_slot: must be a slot number")
    if action not in ACTIONS:
        raise invalid(f"action: must be one of {', '.join(ACTIONS)}")
    if action == "erase":
        return SlotAction(int(slot), action, None)
    if folder is None:  # a feature that is off, as /tools answers (llama-server: 501)
        raise ApiError(403, "FORBIDDEN", "slot save and restore are off: start the server with --slot-save-path",
                       fields={"type": "feature_disabled"})
    return SlotAction(int(slot), action, Path(folder).expanduser() / _file_name(json_object("body", body).get("filename")))


def _file_name(value: Any) -> str:
    """A bare file name: nothing that reaches outside the folder."""
    if not isinstance(value, str) or not value:
        raise invalid("filename: required (a file name in --slot-save-path)")
    if (len(value.encode()) > MAX_NAME or "/" in value or "\\" in value or value in (".", "..")
            or value != value.strip() or not value.isprintable()):
        raise invalid("filename: must be a plain file name (no folders, at most 255 bytes)")
    return value


def answer(req: SlotAction, done: SlotFile | int) -> dict[str, Any]:
    if isinstance(done, int):
        return {"id_slot": req.slot, "n_erased": done}
    assert req.path is not None
    if req.action == "save":
        return {"id_slot": req.slot, "filename": req.path.name, "n_saved": done.tokens, "n_written": done.bytes,
                "timings": {"save_ms": done.ms}}
    return {"id_slot": req.slot, "filename": req.path.name, "n_restored": done.tokens, "n_read": done.bytes,
            "timings": {"restore_ms": done.ms}}
