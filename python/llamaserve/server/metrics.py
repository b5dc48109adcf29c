"""Prometheus metrics: one registry per app, a pure ASGI middleware that counts requests and
active connections, and the /metrics endpoint."""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamaserve.hosting.errors import ModelNotLoaded
from llamaserve.server.errors import ApiError
from llamaserve.hosting.devices import placement
from llamaserve.hosting.host import ModelHost
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server.family import MetricsSection

INFERENCE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
disable_created_metrics()  # a _created series per counter and histogram only adds noise to scrapes


NAMESPACE = "llamaserve:"  # as vLLM's "vllm:" and llama-server's "llamacpp:"
MODEL = ["model_name"]  # the label of every per-model series (vLLM's)


def _name(short: str) -> str:
    return NAMESPACE + short


class _EngineCollector(Collector):
    """Slots, queue, KV cache, prefix cache and speculation, read from the engine at scrape time
    (vLLM's names where the meaning is the same: num_requests_running and _waiting,
    kv_cache_usage_perc, prefix_cache_queries and _hits, spec_decode_num_*_tokens)."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(_name("num_requests_waiting"), "Requests waiting for a slot", labels=MODEL)
        running = GaugeMetricFamily(_name("num_requests_running"), "Requests generating now (busy slots)",
                                    labels=MODEL)
        total = GaugeMetricFamily(_name("slots_total"), "Slots of the loaded model", labels=MODEL)
        cells = GaugeMetricFamily(_name("kv_cache_cells"), "KV cache cells in all", labels=MODEL)
        used = GaugeMetricFamily(_name("kv_cache_cells_used"), "KV cache cells held by requests and idle "
                                 "slots' prompt caches", labels=MODEL)
        usage = GaugeMetricFamily(_name("kv_cache_usage_perc"), "Fraction of KV cache cells held (0 to 1)",
                                  labels=MODEL)
        queries = CounterMetricFamily(_name("prefix_cache_queries"), "Prompt tokens looked up in the prefix "
                                      "cache", labels=MODEL)
        hits = CounterMetricFamily(_name("prefix_cache_hits"), "Prompt tokens served from the prefix cache",
                                   labels=MODEL)
        reused = CounterMetricFamily(_name("prefix_cache_reused"), "Of the prompt tokens served from the "
                                     "prefix cache, those reused past a divergence (moved to new positions)",
                                     labels=MODEL)
        departures = CounterMetricFamily(_name("prefix_cache_misses"), "Requests whose prompt left a cached "
                                         "sequence before its end (usage.cache_miss says where)", labels=MODEL)
        host_bytes = GaugeMetricFamily(_name("prefix_cache_host_bytes"), "Host memory held by prefix "
                                       "snapshots", labels=MODEL)
        disk_bytes = GaugeMetricFamily(_name("prefix_cache_disk_bytes"), "Disk held by the model's prefix "
                                       "snapshot files (--cache-dir)", labels=MODEL)
        disk_hits = CounterMetricFamily(_name("prefix_cache_disk_hits"), "Prefix snapshots restored from disk "
                                        "(--cache-dir)", labels=MODEL)
        drafted = CounterMetricFamily(_name("spec_decode_num_draft_tokens"), "Speculative decoding: drafted "
                                      "tokens verified beside the sampled ones", labels=MODEL)
        accepted = CounterMetricFamily(_name("spec_decode_num_accepted_tokens"), "Speculative decoding: drafted "
                                       "tokens the model chose (emitted without a step of their own)", labels=MODEL)
        memory = GaugeMetricFamily(_name("model_memory_bytes"), "Bytes llama.cpp holds for the model per device "
                                   "(CPU, CUDA0, ...) and kind (weights, kv, compute)",
                                   labels=[*MODEL, "device", "kind"])
        for model in list(self.host.loaded.values()):  # every loaded model
            engine, name = model.engine, [model.name]
            for device in placement(engine.memory_use)["devices"]:
                for kind in ("weights", "kv", "compute"):
                    memory.add_metric([model.name, device["device"], kind], device[f"{kind}_bytes"])
            waiting.add_metric(name, engine.queue_depth)
            running.add_metric(name, engine.busy_slots)
            total.add_metric(name, engine.n_parallel)
            kv = engine.cache_stats
            cells.add_metric(name, kv["kv_cells"])
            used.add_metric(name, kv["kv_cells_used"])
            usage.add_metric(name, kv["kv_cells_used"] / kv["kv_cells"] if kv["kv_cells"] else 0.0)
            queries.add_metric(name, kv["prompt_tokens"])
            hits.add_metric(name, kv["cached_tokens"])
            reused.add_metric(name, kv["reused_tokens"])
            departures.add_metric(name, kv["requests_departed"])
            host_bytes.add_metric(name, kv["host_bytes"])
            disk_bytes.add_metric(name, kv["disk_bytes"])
            disk_hits.add_metric(name, kv["disk_hits"])
            spec = engine.speculation_stats
            drafted.add_metric(name, spec["drafted"])
            accepted.add_metric(name, spec["accepted"])
        yield from (waiting, running, total, cells, used, usage, queries, hits, reused, departures, host_bytes,
                    disk_bytes, disk_hits, drafted, accepted, memory)


class ServerMetrics:
    """Every series is under llamaserve: with a model_name label, but the two the spec's
    /metrics example names (model_inference_seconds, active_connections), kept as written there."""

    def __init__(self, host: ModelHost, sections: Sequence[MetricsSection] = ()) -> None:
        """`sections`: the API families' own series of one model (llama-server's llamacpp:)."""
        self.host = host
        self.sections = tuple(sections)
        self.registry = r = CollectorRegistry()
        self.inference = Histogram("model_inference_seconds", "Model inference time (the spec's series)",
                                   MODEL, buckets=INFERENCE_BUCKETS, registry=r)
        self.ttft = Histogram(_name("time_to_first_token_seconds"), "Time from submit to the first token",
                              MODEL, buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram(_name("inter_token_latency_seconds"), "Time between consecutive generated tokens",
                             MODEL, buckets=ITL_BUCKETS, registry=r)
        self.prompt_tokens = Counter(_name("prompt_tokens"), "Prompt tokens processed", MODEL, registry=r)
        self.completion_tokens = Counter(_name("generation_tokens"), "Tokens generated", MODEL, registry=r)
        self.generations = Counter(_name("request_finished"), "Finished generations by finish reason",
                                   [*MODEL, "finished_reason"], registry=r)
        self.requests = Counter(_name("http_requests"), "HTTP requests by endpoint and status",
                                [*MODEL, "endpoint", "method", "status"], registry=r)
        self.active = 0
        Gauge("active_connections", "Active connections (the spec's series)",
              registry=r).set_function(lambda: self.active)
        r.register(_EngineCollector(host))

    def observe_generation(self, model: str, stats: dict, token_times: list[float]) -> None:
        """Record one finished generation from its engine stats and the times its tokens came."""
        self.generations.labels(model, stats["finish_reason"] or "unknown").inc()
        self.prompt_tokens.labels(model).inc(stats["prompt_tokens"])
        self.completion_tokens.labels(model).inc(stats["completion_tokens"])
        if stats["total_time"]:
            self.inference.labels(model).observe(stats["total_time"])
        if stats["time_to_first_token"] is not None:
            self.ttft.labels(model).observe(stats["time_to_first_token"])
        itl = self.itl.labels(model)
        for earlier, later in zip(token_times, token_times[1:]):  # each gap, as a client saw it
            itl.observe(later - earlier)

    def exposition(self, model: LoadedModel | None = None) -> bytes:
        """Every series, then the families' own of one model, when one is given."""
        text = generate_latest(self.registry)
        if model is None:
            return text
        return text + "".join(section(model) for section in self.sections).encode()


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


def metrics_endpoint(metrics: ServerMetrics, enabled: bool = True):  # noqa: ANN201 - a Starlette endpoint
    started = str(int(time.time()))  # llama-server's Process-Start-Time-Unix header

    async def endpoint(request: Request) -> Response:
        if not enabled:  # llama-server's answer without --metrics
            raise ApiError(501, "NOT_SUPPORTED", "metrics are off (--no-metrics)")
        host = metrics.host
        name = request.query_params.get("model")  # whose own series the families write
        # Asleep (unloaded when idle), the llamacpp: series are the sleeping model's last figures.
        model = (host.current or host.asleep) if name is None else next(
            (m for m in host.loaded.values() if m.answers_to(name)), None)
        if name is not None and model is None:
            raise ModelNotLoaded(f"model: {name[:64]!r} is not loaded",
                                 f"loaded: {', '.join(host.loaded) or 'none'}")
        return Response(metrics.exposition(model), media_type=CONTENT_TYPE_LATEST,
                        headers={"Process-Start-Time-Unix": started})
    return endpoint
