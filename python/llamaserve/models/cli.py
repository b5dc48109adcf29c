"""`llamaserve models` (what the registry sees) and `llamaserve quantize SRC TYPE`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from llamaserve import models as m


def _registry(args: argparse.Namespace, *, allow_paths: bool = False) -> m.ModelRegistry:
    return m.ModelRegistry(args.models_dir or os.environ.get("LLAMASERVE_MODELS_DIR"),
                           config_file=args.models_config or os.environ.get("LLAMASERVE_MODELS_CONFIG"),
                           include_default=not args.no_default, allow_paths=allow_paths)


def _params(n: int | None) -> str:
    if not n:
        return "-"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _models(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except m.ModelsConfigError as exc:
        print(f"llamaserve models: {exc}", file=sys.stderr)
        return 2
    listing = registry.listing()
    if args.json:
        print(json.dumps({"models_dir": str(registry.models_dir), "models": listing}, indent=2))
        return 0
    print(f"models folder: {registry.models_dir}" + ("" if registry.models_dir.is_dir() else " (missing)"))
    if not listing:
        print("no models")
        return 0
    header = ("NAME", "ARCH", "QUANT", "PARAMS", "CTX", "SIZE", "ALIASES")
    rows = []
    for e in listing:
        aliases = ", ".join(e["aliases"])
        if "error" in e:
            rows.append((e["name"], "ERROR", "", "", "", m.format_size(e["size_bytes"]), e["error"]))
            continue
        rows.append((e["name"], e.get("architecture") or "?", e.get("quantization") or "?",
                     _params(e.get("n_params")), str(e.get("context_length") or "-"),
                     m.format_size(e["size_bytes"]), aliases))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal (a line per 10% elsewhere)."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        # sys.stderr when made, not when this module was imported (it may be replaced since)
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last = -1

    def __call__(self, fraction: float) -> None:
        percent = int(fraction * 100)
        if percent == self.last or (not self.tty and percent // 10 == self.last // 10 and percent < 100):
            return
        self.last = percent
        filled = int(self.width * fraction)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}] {percent:3d}% {time.monotonic() - self.started:5.1f}s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and percent >= 100:
            self.stream.write("\n")
        self.stream.flush()


def _quantize(args: argparse.Namespace) -> int:
    try:
        qtype = m.quant_name(args.type)
        source = Path(args.src).expanduser()
        if not source.is_file():  # a model name instead of a file
            source = _registry(args).resolve(args.src).path
        base, _ = m.split_quant_suffix(source.name[:-5] if source.name.lower().endswith(".gguf") else source.stem)
        out = Path(args.output).expanduser() if args.output else source.with_name(f"{base}.{qtype}.gguf")
        if out.exists() and not args.force:
            print(f"llamaserve quantize: {out} exists (--force to replace it)", file=sys.stderr)
            return 2
        if out.exists():
            out.unlink()
        started = time.monotonic()
        m.quantize(source, qtype, out, allow_requantize=args.allow_requantize,
                   progress=ProgressBar(f"{source.name} -> {qtype}"), n_threads=args.threads)
    except (m.RegistryError, m.ModelsConfigError) as exc:
        details = getattr(exc, "details", None)
        print(f"llamaserve quantize: {exc}" + (f" ({details})" if details else ""), file=sys.stderr)
        return 2
    before, after = source.stat().st_size, out.stat().st_size
    print(f"wrote {out} ({m.format_size(after)}, {after / before:.0%} of {m.format_size(before)}) "
          f"in {time.monotonic() - started:.1f}s")
    return 0


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", help=f"models folder (default {m.DEFAULT_MODELS_DIR}) "
                        "[env LLAMASERVE_MODELS_DIR]")
    parser.add_argument("--models-config", help="TOML file naming models [env LLAMASERVE_MODELS_CONFIG]")
    parser.add_argument("--no-default", action="store_true", help="leave out the embedded default model")


def add_model_commands(commands: Any) -> None:
    """Add `models` and `quantize` to the CLI's subcommands."""
    listing = commands.add_parser("models", help="list the models the server can load")
    _add_registry_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON (as GET /api/v1/models)")
    listing.set_defaults(run=_models)

    quant = commands.add_parser("quantize", help="quantize a GGUF with llama.cpp's quantizer")
    quant.add_argument("src", help="a GGUF file, or a model name from `llamaserve models`")
    quant.add_argument("type", help="target type: " + ", ".join(n.lower() for n in m.QUANT_TYPES))
    quant.add_argument("-o", "--output", help="output file (default: beside SRC, named <model>.<TYPE>.gguf)")
    quant.add_argument("--allow-requantize", action="store_true",
                       help="quantize an already-quantized file (compounds the rounding error)")
    quant.add_argument("--threads", type=int, default=0, help="quantizer threads (0: all cores)")
    quant.add_argument("--force", action="store_true", help="replace the output file if it exists")
    _add_registry_options(quant)
    quant.set_defaults(run=_quantize)
