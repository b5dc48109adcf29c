"""`llamaserve chat`: a conversation in the terminal with a model, through its chat template
(Engine.chat, streamed). /exit or an end of input ends it; Ctrl-C stops a reply, and at the
prompt ends the conversation."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from llamaserve.engine import Engine

PROMPT = "> "


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    with Engine.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_parallel=1) as engine:
        history: list[dict[str, Any]] = [{"role": "system", "content": args.system}] if args.system else []
        if interactive:
            print("Type a message; /exit or Ctrl-D ends the conversation, Ctrl-C stops a reply.")
        while True:
            try:
                line = input(PROMPT if interactive else "")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if line.strip() in ("/exit", "/quit"):
                return 0
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            history.append({"role": "assistant", "content": _reply(engine, history, args)})


def _reply(engine: Engine, history: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Print the reply as it comes; what was printed is what the conversation keeps."""
    said: list[str] = []
    chunks = engine.chat(history, stream=True, max_tokens=args.max_tokens, temperature=args.temperature,
                         seed=args.seed)
    try:
        for chunk in chunks:
            sys.stdout.write(chunk.content)
            sys.stdout.flush()
            said.append(chunk.content)
    except KeyboardInterrupt:
        chunks.close()  # type: ignore[union-attr]  # ends the generation
        sys.stdout.write(" [stopped]")
    sys.stdout.write("\n")
    return "".join(said)


def add_chat_command(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="talk with a model in the terminal (its chat template applied)")
    chat.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    chat.add_argument("--system", help="a system message to start the conversation with")
    chat.add_argument("--max-tokens", type=int, default=256, help="most tokens a reply may have (default: 256)")
    chat.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: 0.8)")
    chat.add_argument("--seed", type=int, help="makes replies repeatable")
    chat.add_argument("--ctx", type=int, default=4096, help="context: the conversation so far and the reply (default: 4096)")
    chat.add_argument("--threads", type=int, default=0, help="CPU threads (default: automatic)")
    chat.set_defaults(run=run)
