"""llama-server's /infill request: the code around the cursor (input_prefix, input_suffix), other
files of the project (input_extra) and what was typed after the prefix (prompt), plus every
/completion field; the FIM prompt replaces the prompt and the rest is a /completion request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamaserve.engine.fim import ExtraFile, Pieces, check_extra, check_pieces
from llamaserve.generation_params import INT32_MAX, check_text
from llamaserve.server.errors import invalid
from llamaserve.server.llamacpp.completion_protocol import COMPLETION_SCHEMA
from llamaserve.server.protocol_values import json_object

_PIECES = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [
    {"type": "string"}, {"type": "integer", "minimum": 0, "maximum": INT32_MAX}]}}]}
INFILL_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["input_prefix", "input_suffix"],
    "properties": {
        **{name: schema for name, schema in COMPLETION_SCHEMA["properties"].items() if name != "prompt"},
        "input_prefix": {**_PIECES, "description": "the code before the cursor"},
        "input_suffix": {**_PIECES, "description": "the code after the cursor"},
        "input_extra": {"type": "array", "description": "other files of the project, as context", "items": {
            "type": "object", "required": ["text"],
            "properties": {"filename": {"type": "string"}, "text": {"type": "string"}}}},
        "prompt": {"type": "string", "description": "what was typed after the prefix"}}}


@dataclass(frozen=True)
class InfillRequest:
    input_prefix: Pieces
    input_suffix: Pieces
    input_extra: list[ExtraFile]
    prompt: str
    completion: dict[str, Any]  # the /completion fields, its prompt still to be framed


def parse(body: Any) -> InfillRequest:
    """The infill fields checked before a model is leased; the completion fields are checked
    by /completion's parser once the FIM prompt is made."""
    values = {k: v for k, v in json_object("body", body).items() if v is not None}
    for name in ("input_prefix", "input_suffix"):
        if name not in values:
            raise invalid(f"{name}: required")
    completion = {k: v for k, v in values.items() if k not in ("input_prefix", "input_suffix", "input_extra")}
    return InfillRequest(check_pieces("input_prefix", values["input_prefix"]),
                         check_pieces("input_suffix", values["input_suffix"]),
                         check_extra("input_extra", values.get("input_extra", [])),
                         check_text("prompt", values.get("prompt", "")), completion)
