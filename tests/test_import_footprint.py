"""What a server loads at start is resident memory for its whole life (issue 28: resident memory
within 1.05x of llama-server's). Libraries that only some features use are imported where
those features run: numpy (embeddings, reranking), httpx (the CORS proxy, Vertex AI) with the
rich and pygments of its command line, PyJWT and cryptography (token authentication)."""
import json
import subprocess
import sys

LOADED_ON_USE = ("numpy", "httpx", "jwt", "cryptography", "rich", "pygments")


def test_serving_app_loads_no_feature_only_library():
    code = ("import json, sys, llamaserve.cli, llamaserve.server.app; "
            f"print(json.dumps(sorted(m for m in {LOADED_ON_USE!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
