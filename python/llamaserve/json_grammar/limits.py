"""How large a schema's grammar may grow, and the error for a schema that cannot be one."""
from __future__ import annotations

from llamaserve.native import MAX_GRAMMAR_WIDTH

MAX_RULES = 4000
MAX_DEPTH = 64
MAX_REPEAT = 1000  # largest minItems/maxItems/minLength/maxLength spelled out
MAX_ENUM_RANGE = 2000  # a bounded integer range becomes this many literals at most
MAX_ENUM = 4096  # values of one enum (matched as a prefix tree: cheap, but the grammar grows)
# Alternatives that can all come next: anyOf/oneOf options, optional properties in a row. The
# grammar sampler weighs each of them at every character (see the engine's grammar limits).
MAX_ALTERNATIVES = MAX_GRAMMAR_WIDTH // 2


class SchemaError(ValueError):
    """The schema cannot be turned into a grammar; the message names the keyword and where."""
