"""Request and response types of llama-server's /tokenize and /detokenize."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamaserve.engine import Engine
from llamaserve.generation_params import INT32_MAX, check_bool, check_text, check_token_ids
from llamaserve.server.errors import invalid
from llamaserve.server.offloop import dumps, write_list, write_object

MAX_NAME = 256
MODEL_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
TOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["content"], "additionalProperties": False,
    "properties": {"content": {"type": "string"}, "model": MODEL_SCHEMA,
                   "add_special": {"type": "boolean", "description": "add BOS and the like (default false)"},
                   "parse_special": {"type": "boolean", "description": "read control tokens (default true)"},
                   "with_pieces": {"type": "boolean", "description": "each token's text with its id"}}}
DETOKENIZE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["tokens"], "additionalProperties": False,
    "properties": {"tokens": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": INT32_MAX}},
                   "model": MODEL_SCHEMA}}


def _body(body: Any, allowed: tuple[str, ...], required: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    for name in body:
        if name not in allowed:
            raise invalid(f"{str(name)[:64]}: unknown field")
    values = {k: v for k, v in body.items() if v is not None}
    if required not in values:
        raise invalid(f"{required}: required")
    if "model" in values and len(check_text("model", values["model"])) > MAX_NAME:
        raise invalid("model: name too long")
    return values


@dataclass(frozen=True)
class TokenizeRequest:
    content: str
    model: str | None = None
    add_special: bool = False  # llama-server's default
    parse_special: bool = True
    with_pieces: bool = False


def parse_tokenize(body: Any) -> TokenizeRequest:
    values = _body(body, tuple(TOKENIZE_SCHEMA["properties"]), "content")
    return TokenizeRequest(check_text("content", values["content"]), values.get("model"),
                           *(check_bool(flag, values.get(flag, default)) for flag, default in
                             (("add_special", False), ("parse_special", True), ("with_pieces", False))))


@dataclass(frozen=True)
class DetokenizeRequest:
    tokens: list[int]
    model: str | None = None


def parse_detokenize(body: Any) -> DetokenizeRequest:
    values = _body(body, tuple(DETOKENIZE_SCHEMA["properties"]), "tokens")
    tokens = values["tokens"]
    return DetokenizeRequest(check_token_ids("tokens", tokens) if tokens != [] else [], values.get("model"))


def check_vocabulary(tokens: list[int], n_vocab: int) -> None:
    for token in tokens:
        if token >= n_vocab:
            raise invalid(f"tokens: unknown token id {token}", f"the model's vocabulary has {n_vocab} tokens")


def piece(raw: bytes) -> str | list[int]:
    """A token's text as llama-server gives it: a string, or its bytes when they are not
    valid UTF-8 on their own (part of a multi-byte character)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


# The answers, written a token at a time (see server/offloop.py): a 4 MB text has a million.

def tokenize_answer(engine: Engine, req: TokenizeRequest) -> str:
    tokens = engine.tokenize(req.content, add_special=req.add_special, parse_special=req.parse_special)
    if not req.with_pieces:
        return write_object({"tokens": write_list(str(t) for t in tokens)})
    return write_object({"tokens": write_list(
        f'{{"id":{t},"piece":{dumps(piece(engine.token_bytes(t)))}}}' for t in tokens)})


def detokenize_answer(engine: Engine, req: DetokenizeRequest) -> str:
    check_vocabulary(req.tokens, int(engine.metadata["n_vocab"]))
    return write_object({"content": dumps(engine.detokenize(req.tokens))})
