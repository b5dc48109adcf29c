"""The load probe's child process: `python -m llamaserve.models.probe_child FILE`.

Builds the model and a tiny context exactly as a server would, decodes one token, then exits.
llama.cpp may abort the process on a damaged file (a GGML_ASSERT): that costs this process
only, and its exit status and stderr tell the parent (probe.py) why. Exit status 0: the file
loads; REFUSED: llama.cpp refused it with an error; anything else: see the parent."""
from __future__ import annotations

import json
import sys

REFUSED = 3


def main(argv: list[str]) -> int:
    from llamaserve.engine import Engine
    from llamaserve.errors import EngineError, ModelLoadError

    try:
        # One slot, one thread, no caches: what the file needs, not what serving needs.
        engine = Engine.load(argv[1], n_ctx=256, n_parallel=1, n_threads=1, cache_ram=0,
                             spec="off", verbose=True)
    except ModelLoadError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
        return REFUSED
    try:
        engine.generate("Hello", max_tokens=1, temperature=0)
    except EngineError:
        pass  # a model that cannot generate (an embedding model) is a request's problem
    engine.close()
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
