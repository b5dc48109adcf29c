"""Tool-call formats per model family, chosen from the model's chat template, each read by
one streaming output parser (see base.py)."""
from __future__ import annotations

from llamaserve.server.chat.formats.base import OutputParser, PlainText, ToolFormat
from llamaserve.server.chat.formats import json_formats, markup_formats
from llamaserve.server.chat.formats.generic import GenericJson, Hermes

# Most specific first: a template is given the first format whose markers it contains
# (markup formats before JSON ones: several wrap their markup in Hermes' <tool_call> tags).
FORMATS: tuple[type[ToolFormat], ...] = (*markup_formats.FORMATS, *json_formats.FORMATS, Hermes)


def format_for(template_source: str | None) -> ToolFormat:
    """The call format of a chat template (its Jinja source); the generic one when unknown."""
    if template_source:
        for fmt in FORMATS:
            if fmt.detect(template_source):
                return fmt()
    return GenericJson()


__all__ = ["FORMATS", "GenericJson", "OutputParser", "PlainText", "ToolFormat", "format_for"]
