"""How long the event loop keeps /health waiting while something heavy runs: a thread of its
own polls /health and records each answer's latency and status."""
from __future__ import annotations

import statistics
import threading
import time

import httpx


class HealthProbe:
    """with HealthProbe(url) as probe: <the heavy request>; then probe.p99 and probe.statuses."""

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url = url + "/health"
        self.interval = interval
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                status = client.get(self.url).status_code
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(status)
                time.sleep(self.interval)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        while not self.latencies:  # the probe is in flight before the heavy work starts
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    @property
    def p99(self) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    def report(self) -> str:
        return f"/health median {self.median * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, max {max(self.latencies) * 1000:.0f} ms over {len(self.latencies)}"
