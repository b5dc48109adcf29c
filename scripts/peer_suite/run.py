"""llama.cpp's own HTTP server test suite (tools/server/tests/unit in the vendored tree) run
against llama-server built from that tree and against `llamaserve serve`, both on the default
weights (shim.py maps the fixture's options and model names), file by file; prints the pass
counts side by side and writes them to benchmarks/out/peer-suite/results.md and .json. Not in
CI: the suite starts a server per test.

    python scripts/peer_suite/run.py [--files test_basic.py ...] [--servers llamaserve ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import llama_tools  # noqa: E402

import llamaserve  # noqa: E402

SERVERS = ("llama-server", "llamaserve")
PORTS = {"llama-server": 8080, "llamaserve": 8091}  # apart, so that both may run at once


def suite_copy(scratch: Path, target: str) -> Path:
    """A fresh copy of the vendored tree's server tests (their fixture writes beside them), one per
    server so that runs against the two servers may go on at once."""
    source = llama_tools.vendor_llama.vendor(llama_tools.SCRATCH / "llama.cpp", full=True)
    tree = scratch / target  # the tree's layout kept: tests name ../../../models/templates/*.jinja
    shutil.rmtree(tree, ignore_errors=True)
    tests = tree / "tools" / "server" / "tests"
    shutil.copytree(source / "tools" / "server" / "tests", tests)
    (tree / "models").symlink_to(source / "models")
    return tests


def shim(scratch: Path, target: str, binary: Path) -> Path:
    path = scratch / f"as-{target}"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "shim.py"}" {target} "{binary}" "$@"\n')
    path.chmod(0o755)
    return path


def run_file(tests: Path, test_file: str, server_bin: Path, report: Path, timeout: int, port: int) -> dict[str, int]:
    env = {**os.environ, "LLAMA_SERVER_BIN_PATH": str(server_bin), "PORT": str(port),
           "PEER_SUITE_MODEL": str(llamaserve.default_model_path()), "PYTHONUNBUFFERED": "1"}
    try:
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                        f"unit/{test_file}", f"--junitxml={report}", "-o", "addopts="],
                       cwd=tests, env=env, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"passed": 0, "failed": 0, "skipped": 0, "timed_out": 1}
    if not report.exists():
        return {"passed": 0, "failed": 0, "skipped": 0, "timed_out": 0}
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    failing = [f"{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped, "timed_out": 0,
            "failing": failing}


def main() -> int:
    try:
        import wget  # noqa: F401 - the suite's fixture imports it
    except ImportError:
        print("the suite needs its own requirements: pip install -r "
              "benchmarks/out/llama.cpp/tools/server/tests/requirements.txt", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", help="test files (default: every unit/test_*.py)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--timeout", type=int, default=900, help="seconds per file and server")
    args = parser.parse_args()
    scratch = llama_tools.SCRATCH / "peer-suite"
    scratch.mkdir(parents=True, exist_ok=True)
    bin_dir = llama_tools.build(["llama-server"])
    saved = scratch / "results.json"  # earlier runs' figures are kept: a run may cover one server or file
    for target in args.servers:
        tests = suite_copy(scratch, target)
        files = args.files or sorted(p.name for p in (tests / "unit").glob("test_*.py"))
        server = shim(scratch, target, bin_dir / "llama-server")
        for test_file in files:
            print(f"{target}: {test_file}", file=sys.stderr, flush=True)
            report = scratch / f"{target}-{test_file}.xml"
            report.unlink(missing_ok=True)
            result = run_file(tests, test_file, server, report, args.timeout, PORTS[target])
            # read again before writing: another run (the other server) may have saved meanwhile
            results: dict[str, dict[str, dict]] = json.loads(saved.read_text()) if saved.exists() else {}
            results.setdefault(test_file, {})[target] = result
            saved.write_text(json.dumps(results, indent=2))
    results = json.loads(saved.read_text()) if saved.exists() else {}
    shown = [s for s in SERVERS if any(s in by_server for by_server in results.values())]
    lines = ["| file | " + " | ".join(f"{s} passed" for s in shown) + " |", "|---|" + "---|" * len(shown)]
    totals = {s: 0 for s in shown}
    for test_file, by_server in sorted(results.items()):
        cells = []
        for s in shown:
            r = by_server.get(s)
            if r is None:
                cells.append("")
                continue
            totals[s] += r["passed"]
            ran = r["passed"] + r["failed"]
            cells.append("timed out" if r["timed_out"] else f"{r['passed']} of {ran}")
        lines.append(f"| {test_file} | " + " | ".join(cells) + " |")
    lines.append("| all | " + " | ".join(str(totals[s]) for s in shown) + " |")
    text = "\n".join(lines)
    (scratch / "results.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
