"""What a server loads at start is resident memory for its whole life (issue 28: resident memory
within 1.05x of llama-server's). Libraries that only some features use are imported where
those features run: numpy (embeddings, reranking), httpx (the CORS proxy, Vertex AI) with the
rich and pygments of its command line, PyJWT and cryptography (token authentication); and
`llamaserve serve` builds a command line that also lists the benchmarks without loading them."""
import json
import subprocess
import sys

import pytest

LOADED_ON_USE = ("numpy", "httpx", "jwt", "cryptography", "rich", "pygments")
BENCHMARK_ONLY = ("llamaserve.bench.loadgen", "llamaserve.bench.spec_load", "llamaserve.bench.chat_load",
                  "llamaserve.bench.agent_load", "statistics")


def loaded(code: str, names: tuple[str, ...]) -> list[str]:
    script = f"import json, sys; {code}; print(json.dumps(sorted(m for m in {names!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_app_loads_no_feature_only_library():
    assert loaded("import llamaserve.cli, llamaserve.server.app", LOADED_ON_USE) == []


def test_the_command_line_lists_the_benchmarks_without_loading_them():
    assert loaded("import llamaserve.cli; llamaserve.cli.build_parser()", BENCHMARK_ONLY) == []


def test_the_spec_benchmark_still_checks_its_workloads(capsys):
    from llamaserve.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["bench", "spec", "--url", "x", "--workloads", "quote"]).workloads == ["quote"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "spec", "--url", "x", "--workloads", "poem"])
    assert "poem" in capsys.readouterr().err
