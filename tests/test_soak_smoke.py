"""The soak benchmark (benchmarks/soak.py) in its smoke size: a real `llamaserve serve`, 8
clients for 8 s on every generation API, a third of the requests vanishing; no lost token,
no 5xx, no failed request, no busy slot at the end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_a_short_soak_passes():
    run = subprocess.run([sys.executable, str(SOAK), "--duration", "8", "--clients", "8"],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.rstrip().endswith("PASS")
    totals = next(line.split() for line in run.stdout.splitlines() if line.startswith("all "))
    requests, completed, vanished = int(totals[1]), int(totals[2]), int(totals[4])
    assert completed > 0 and vanished > 0 and requests >= completed + vanished
