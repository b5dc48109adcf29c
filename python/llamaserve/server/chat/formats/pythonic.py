"""Python-style calls, `name(a=1, b="x")` or a list of them, as Gemma and LFM2 write them
and small models often do: parsed with `ast` (literals only, never evaluated)."""
from __future__ import annotations

import ast
import json
from collections.abc import Collection
from typing import Any

from llamaserve.server.chat.formats.calls import Calls
from llamaserve.server.chat.formats.reading import Reader

MAX_CHARS = 20_000  # a call this long is not a call; ast must not chew on megabytes


def python_calls(text: str, names: Collection[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls in `text` if all of it is calls to known tools with literal keyword arguments."""
    if len(text) > MAX_CHARS:
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    calls = []
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
                and not node.args):
            return None
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            json.dumps(arguments, allow_nan=False)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        calls.append((node.func.id, arguments))
    return calls or None


def emit_python_calls(text: str, calls: Calls) -> Reader:
    """Emit the calls `text` holds (each whole: Python arguments are known only once they
    parse); False, having emitted nothing, if it is not only calls."""
    found = python_calls(text, calls.names)
    if found is None:
        return False
    for name, arguments in found:
        if calls.full:
            break
        yield calls.start(name)
        yield calls.arguments(json.dumps(arguments, ensure_ascii=False))
        yield calls.end()
    return True
