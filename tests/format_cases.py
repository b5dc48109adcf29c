"""What the tool-call format tests share: the vendored templates, reading a reply whole or in
given pieces, random piece boundaries, and a reply's outcome as plain values."""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from llamaserve.server.chat.formats import OutputParser
from llamaserve.server.chat.formats.collect import Collected
from llamaserve.server.chat.formats.events import MalformedCall

TEMPLATES = Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp" / "models" / "templates"
Case = tuple[str, str | None, list[tuple[str, dict[str, Any]]]]  # reply, content, calls


@functools.lru_cache(maxsize=None)
def source(template: str) -> str:
    return (TEMPLATES / template).read_text()


def parse(fmt: Any, text: str, pieces: list[str] | None = None, parallel: bool = True, *,
          tools: list[Any]) -> tuple[Collected, list[Any]]:
    parser, collected, events = OutputParser(fmt, tools, parallel), Collected(), []
    for piece in pieces if pieces is not None else [text]:
        events += parser.feed(piece)
    events += parser.finish()
    collected.add(events)
    return collected, events


def random_pieces(text: str, seed: int, longest: int = 7) -> list[str]:
    rnd, pieces, i = random.Random(seed), [], 0
    while i < len(text):
        k = rnd.randint(1, longest)
        pieces.append(text[i:i + k])
        i += k
    return pieces


def outcome(collected: Collected) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    return collected.content, [(c.name, json.loads(c.arguments)) for c in collected.calls]


def all_cases(cases: dict[str, list[Case]]) -> list[Any]:
    return [pytest.param(t, i, id=f"{t}-{i}") for t, found in cases.items() for i in range(len(found))]


def reply_in_history(chat: Any, tools: list[Any], calls: list[tuple[str, dict[str, Any]]], *,
                     content: str | None = "", ids: str = "call_{}") -> str:
    """How a chat template writes an assistant turn making `calls`: the history's text after
    what it shares with the prompt (where a reply begins)."""
    offered = [t.to_openai() for t in tools]
    user = [{"role": "user", "content": "Weather in Paris?"}]
    assistant = {"role": "assistant", "content": content, "tool_calls": [
        {"id": ids.format(i), "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)]}
    prompt = chat.render(user, tools=offered)
    history = chat.render([*user, assistant], tools=offered, add_generation_prompt=False)
    common = next((i for i, (a, b) in enumerate(zip(prompt, history)) if a != b), len(prompt))
    if common < len(prompt):  # they part inside a tag: the reply begins where it does
        common = max(prompt.rfind(">", 0, common), prompt.rfind("\n", 0, common)) + 1
    return history[common:]


def read_raising_only_malformed(fmt: Any, replies: list[str], tools: list[Any]) -> None:
    """Read each reply whole and in small pieces: a reader may give up on a call it began
    (MalformedCall), and must never raise anything else."""
    for reply in replies:
        for pieces in (None, random_pieces(reply, 2, 3)):
            try:
                parse(fmt, reply, pieces, tools=tools)
            except MalformedCall:
                pass
