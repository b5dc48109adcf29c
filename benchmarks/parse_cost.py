"""The chat pipeline's output parser, per token: what reading a reply costs on top of
generating it, for every tool-call format (plain text, and a call whose arguments hold a long
string), fed in token-sized pieces (4 characters) as the engine delivers them.

    python benchmarks/parse_cost.py

Prints microseconds per token, best of 5 runs; for scale, SmolLM2-135M decodes a token in
about 10 ms on this 2-core machine.
"""
from __future__ import annotations

import json
import time

from llamaserve.server.chat.formats import FORMATS, GenericJson, OutputParser, PlainText
from llamaserve.server.chat.formats.reasoning import MARKERS, ReasoningSplit
from llamaserve.server.chat.tools import Tool

TEXT = "The quick brown fox jumps over the lazy dog. " * 400
TOOL = Tool("save_note", "Save a note", {"type": "object", "properties": {"text": {"type": "string"}},
                                         "required": ["text"]})
PIECE = 4


def per_token(make_parser, reply: str, runs: int = 5) -> float:
    pieces = [reply[i:i + PIECE] for i in range(0, len(reply), PIECE)]
    best = float("inf")
    for _ in range(runs):
        parser = make_parser()
        began = time.perf_counter()
        for piece in pieces:
            parser.feed(piece)
        parser.finish()
        best = min(best, (time.perf_counter() - began) / len(pieces))
    return best * 1e6


def main() -> None:
    call = json.dumps({"name": TOOL.name, "arguments": {"text": TEXT}})
    rows = [("no tools (PlainText)", per_token(PlainText, TEXT), None),
            ("reasoning <think> + no tools", per_token(
                lambda: ReasoningSplit(PlainText(), MARKERS[-1], False), "<think>" + TEXT + "</think>" + TEXT), None),
            ("generic JSON", per_token(lambda: OutputParser(GenericJson(), [TOOL]), TEXT),
             per_token(lambda: OutputParser(GenericJson(), [TOOL]), call))]
    for fmt_type in FORMATS:
        fmt = fmt_type()
        rows.append((fmt.name, per_token(lambda f=fmt: OutputParser(f, [TOOL]), TEXT), None))
    print(f"{'format':32} {'plain text':>12} {'JSON call':>12}   (µs per {PIECE}-character piece)")
    for name, plain, called in rows:
        print(f"{name:32} {plain:12.2f} {'' if called is None else f'{called:12.2f}'}")


if __name__ == "__main__":
    main()
