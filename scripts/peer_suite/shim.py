"""Stands in for llama-server under llama.cpp's own server test suite: reads the llama-server
options its fixture passes, and starts either llama-server itself or `llamaserve serve` with the
nearest equivalent options, on the default weights in place of the models the suite would
download (nothing is downloaded). Options with no equivalent are left out and listed on stderr.

    python shim.py llamaserve|llama-server LLAMA_SERVER_BINARY [llama-server options...]
"""
from __future__ import annotations

import os
import sys

MODEL_OPTIONS = {"-m", "--model", "-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-mu", "--model-url"}
# llama-server option -> llamaserve serve option, for those whose value means the same
SAME_VALUE = {"--port": "--port", "--host": "--host", "--threads": "--threads", "-t": "--threads",
              "--n-gpu-layers": "--gpu-layers", "-ngl": "--gpu-layers", "-ctk": "--cache-type-k",
              "-ctv": "--cache-type-v", "-fa": "--flash-attn", "--cors-origins": "--cors-origins",
              "--reasoning-format": "--reasoning-format", "--alias": "--served-model-name",
              "--api-key": "--api-keys", "--models-dir": "--models-dir", "--cache-reuse": "--cache-reuse",
              "--reasoning-budget": "--reasoning-budget", "--reasoning": "--reasoning", "--seed": "--seed", "--temp": "--temp",
              "--chat-template": "--chat-template", "--chat-template-file": "--chat-template-file", "--tags": "--tags",
              "--sleep-idle-seconds": "--idle-unload", "--slot-save-path": "--slot-save-path", "--tools": "--tools",
              "--mcp-servers-json": "--mcp-servers-json", "--mcp-servers-config": "--mcp-servers-config"}
SAME_SWITCH = {"--kv-unified": "--kv-unified", "--swa-full": "--swa-full", "--slots": "--slots",
               "--no-slots": "--no-slots", "--no-ui": "--no-ui",
               "--reranking": "--reranking",
               "--verbose": "--verbose", "--ui-mcp-proxy": "--ui-mcp-proxy"}
# Switches llama-server needs and llamaserve has on anyway (or has no use for).
NO_VALUE = {"--cont-batching", "--embedding", "--embeddings", "--metrics", "--jinja", "--no-jinja",
            "--offline", "--no-webui", "--context-shift",
            "--no-models-autoload", "--no-mmproj", "--no-cache-idle-slots", "--backend_sampling"}


def llamaserve_argv(args: list[str], model: str) -> list[str]:
    out = [sys.executable, "-m", "llamaserve", "serve", "--model", model, "--log-level", "warning"]
    ctx = parallel = None
    dropped = []
    i = 0
    while i < len(args):
        name = args[i]
        value = args[i + 1] if i + 1 < len(args) else ""
        if name in MODEL_OPTIONS:
            i += 2
            continue
        if name in SAME_SWITCH:
            out.append(SAME_SWITCH[name])
        elif name in NO_VALUE:
            pass
        elif name in SAME_VALUE:
            out += [SAME_VALUE[name], value]
            i += 1
        elif name in ("-c", "--ctx-size"):
            ctx, i = int(value), i + 1
        elif name in ("-np", "--parallel"):
            parallel, i = int(value), i + 1
        elif name in ("-n", "--n-predict"):
            if int(value) > 0:
                out += ["--default-max-tokens", value]
            i += 1
        elif name == "--cache-ram":
            out += ["--cache-ram", f"{value}MB" if int(value) >= 0 else "1GB"]
            i += 1
        else:
            takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
            dropped.append(f"{name} {value}" if takes_value else name)
            i += 1 if takes_value else 0
        i += 1
    parallel = parallel or 1
    if "--metrics" not in args:  # llama-server answers /metrics only when asked to
        out.append("--no-metrics")
    if "--models-dir" not in out:  # llama-server with one --model lists no folder of others
        out += ["--models-dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-models")]
    out += ["--parallel", str(parallel)]
    if ctx and "--kv-unified" in out:  # one pool that any request may fill
        out += ["--ctx", str(ctx), "--kv-cells", str(ctx)]
    elif ctx:
        out += ["--ctx", str(max(ctx // parallel, 8))]  # llama-server's -c is every slot's together
    if dropped:
        print(f"peer-suite shim: no llamaserve equivalent for {', '.join(dropped)}", file=sys.stderr)
    return out


def llama_server_argv(binary: str, args: list[str], model: str) -> list[str]:
    out, i = [binary, "--model", model], 0
    while i < len(args):
        if args[i] in MODEL_OPTIONS:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def main() -> None:
    target, binary, *args = sys.argv[1:]
    model = os.environ["PEER_SUITE_MODEL"]
    argv = llamaserve_argv(args, model) if target == "llamaserve" else llama_server_argv(binary, args, model)
    print("peer-suite shim:", " ".join(argv), file=sys.stderr, flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
