"""Prometheus metrics: one registry per app, a pure ASGI middleware that counts requests and
active connections, and the /metrics endpoint."""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamaserve.hosting.host import ModelHost

INFERENCE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _EngineCollector(Collector):
    """Slots, queue, KV cache, prefix cache and speculation, read from the engine at scrape time
    (vLLM's kv_cache_usage_perc, prefix-cache and spec-decode counters are the model)."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("queue_depth", "Requests waiting for a slot", labels=["model"])
        busy = GaugeMetricFamily("busy_slots", "Slots generating now", labels=["model"])
        total = GaugeMetricFamily("slots_total", "Slots of the loaded model", labels=["model"])
        cells = GaugeMetricFamily("kv_cache_cells", "KV cache cells in all", labels=["model"])
        used = GaugeMetricFamily("kv_cache_cells_used", "KV cache cells held by requests and idle "
                                 "slots' prompt caches", labels=["model"])
        usage = GaugeMetricFamily("kv_cache_usage_perc", "Fraction of KV cache cells held (0 to 1)",
                                  labels=["model"])
        queries = CounterMetricFamily("prefix_cache_queries", "Prompt tokens looked up in the prefix "
                                      "cache", labels=["model"])
        hits = CounterMetricFamily("prefix_cache_hits", "Prompt tokens served from the prefix cache",
                                   labels=["model"])
        host_bytes = GaugeMetricFamily("prefix_cache_host_bytes", "Host memory held by prefix "
                                       "snapshots", labels=["model"])
        drafted = CounterMetricFamily("spec_drafted_tokens", "Speculative decoding: drafted tokens "
                                      "verified beside the sampled ones", labels=["model"])
        accepted = CounterMetricFamily("spec_accepted_tokens", "Speculative decoding: drafted tokens "
                                       "the model chose (emitted without a step of their own)", labels=["model"])
        for model in list(self.host.loaded.values()):  # every loaded model
            engine, name = model.engine, [model.name]
            queue.add_metric(name, engine.queue_depth)
            busy.add_metric(name, engine.busy_slots)
            total.add_metric(name, engine.n_parallel)
            kv = engine.cache_stats
            cells.add_metric(name, kv["kv_cells"])
            used.add_metric(name, kv["kv_cells_used"])
            usage.add_metric(name, kv["kv_cells_used"] / kv["kv_cells"] if kv["kv_cells"] else 0.0)
            queries.add_metric(name, kv["prompt_tokens"])
            hits.add_metric(name, kv["cached_tokens"])
            host_bytes.add_metric(name, kv["host_bytes"])
            spec = engine.speculation_stats
            drafted.add_metric(name, spec["drafted"])
            accepted.add_metric(name, spec["accepted"])
        yield from (queue, busy, total, cells, used, usage, queries, hits, host_bytes, drafted, accepted)


class ServerMetrics:
    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self.registry = r = CollectorRegistry()
        self.inference = Histogram("model_inference_seconds", "Model inference time", ["model"],
                                   buckets=INFERENCE_BUCKETS, registry=r)
        self.ttft = Histogram("time_to_first_token_seconds", "Time from submit to the first token",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("inter_token_latency_seconds",
                             "Time between generated tokens (a request's mean, once per token)",
                             ["model"], buckets=ITL_BUCKETS, registry=r)
        self.prompt_tokens = Counter("prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.completion_tokens = Counter("completion_tokens", "Tokens generated", ["model"], registry=r)
        self.generations = Counter("generations", "Finished generations by finish reason",
                                   ["model", "finish_reason"], registry=r)
        self.requests = Counter("http_requests", "HTTP requests by endpoint and status",
                                ["model", "endpoint", "method", "status"], registry=r)
        self.active = 0
        Gauge("active_connections", "Active connections", registry=r).set_function(lambda: self.active)
        r.register(_EngineCollector(host))

    def observe_generation(self, model: str, stats: dict) -> None:
        """Record one finished generation from its engine stats."""
        self.generations.labels(model, stats["finish_reason"] or "unknown").inc()
        prompt, completion = stats["prompt_tokens"], stats["completion_tokens"]
        self.prompt_tokens.labels(model).inc(prompt)
        self.completion_tokens.labels(model).inc(completion)
        total, first = stats["total_time"], stats["time_to_first_token"]
        if total:
            self.inference.labels(model).observe(total)
        if first is not None:
            self.ttft.labels(model).observe(first)
            if completion > 1 and total:
                gap = max(total - first, 0.0) / (completion - 1)
                itl = self.itl.labels(model)
                for _ in range(completion - 1):
                    itl.observe(gap)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI: counts in-flight requests (active_connections) and every request by
    endpoint (the route's path template) and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.active += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.active -= 1
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.requests.labels(self.metrics.host.model_name, endpoint, method, str(status)).inc()


def metrics_endpoint(metrics: ServerMetrics):  # noqa: ANN201 - a Starlette endpoint
    async def endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
    return endpoint
