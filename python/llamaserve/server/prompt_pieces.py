"""A generation request's prompt cut into the pieces where prefixes are worth matching (for
prefix-affinity routing): one per chat message (system prompt, then each turn), or blocks
of a plain prompt. Each family says which of its fields hold the prompt (family.py)."""
from __future__ import annotations

import json
from typing import Any

BLOCK_CHARS = 256  # a plain prompt's pieces
MAX_BLOCKS = 32  # a longer plain prompt is cut after this many blocks (routing keys are bounded)


def text(content: Any) -> str:
    """A message's content as text: a string, or the text of its parts (OpenAI, Anthropic)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\x1f".join(text(part.get("text", part.get("content", "")) if isinstance(part, dict) else part)
                           for part in content)
    return "" if content is None else json.dumps(content, sort_keys=True, default=str)


def messages(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [f"{m.get('role', m.get('type', ''))}\x1e{text(m.get('content', m.get('output')))}\x1d"
            if isinstance(m, dict) else text(m) + "\x1d" for m in items]


def blocks(prompt: Any) -> list[str]:
    """A plain prompt's blocks: text, the first of a batch of prompts, or token ids."""
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else json.dumps(prompt[:MAX_BLOCKS * BLOCK_CHARS])
    if not isinstance(prompt, str):
        return []
    return [prompt[i:i + BLOCK_CHARS] for i in range(0, len(prompt), BLOCK_CHARS)]
