"""Command line: `llamaserve generate|serve ...` (also `python -m llamaserve`)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from llamaserve.cli_options import OneLineErrors, add_server_options
from llamaserve.errors import EngineError

if TYPE_CHECKING:
    from llamaserve.config import ServerConfig


def _generate(args: argparse.Namespace) -> int:
    from llamaserve.engine import Engine

    with Engine.load(args.model, n_ctx=args.ctx, n_threads=args.threads, n_parallel=1) as engine:
        stream = engine.stream(args.prompt, max_tokens=args.max_tokens,
                               temperature=args.temperature, seed=args.seed)
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from llamaserve.config import from_arguments
    from llamaserve.server.serve import run

    try:
        config = from_arguments(args)
        if config.ray:
            _serve_on_ray(config)
        else:
            run(config)
    except (ValueError, OSError) as exc:  # a bad setting or key file, found before serving
        print(f"llamaserve serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve_on_ray(config: ServerConfig) -> None:
    """`serve --ray`: Ray is imported only here, and only if asked for."""
    try:
        from llamaserve.ray.launch import run
    except ImportError as exc:
        raise ValueError(f"--ray: {exc}") from None
    run(config)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="llamaserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="continue a raw prompt (no chat template: for base models; "
                              "`chat` talks with an instruct model) and print the text as it comes")
    gen.add_argument("prompt")
    gen.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--ctx", type=int, default=4096)
    gen.add_argument("--threads", type=int, default=0)
    gen.set_defaults(run=_generate)

    from llamaserve.terminal_chat import add_chat_command

    add_chat_command(commands)

    serve = commands.add_parser("serve", help="serve the HTTP API (native /api/v1, /health, /metrics)",
                                usage="%(prog)s [options]")
    add_server_options(serve)
    serve.set_defaults(run=_serve)

    from llamaserve.bench.commands import add_bench_commands

    add_bench_commands(commands)

    from llamaserve.models.cli import add_model_commands  # models, quantize

    add_model_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EngineError as exc:
        print(f"llamaserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
