"""From ServerConfig to Serve deployment options, and from `serve run` arguments (or a
Serve config file's `args:`) to a ServerConfig."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ray.serve.config import RequestRouterConfig

from llamaserve.config import ServerConfig, env_name

ROUTER = "llamaserve.ray.router.PrefixAffinityRouter"
HEALTH_CHECK_PERIOD_S = 5.0  # the check is one native call: cheap enough to ask often


def _names() -> dict[str, str]:
    """Every spelling an argument may have -> the config field: the field name
    (`n_threads`), its flag without dashes (`threads`, `rate-limit`, `rate_limit`)."""
    names = {}
    for f in fields(ServerConfig):
        flag = f.metadata["flag"].lstrip("-")
        names.update({f.name: f.name, flag: f.name, flag.replace("-", "_"): f.name})
    return names


def config_from_args(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """`serve run llamaserve.ray:app model=x.gguf replicas=2 threads=1` (strings), or a
    config file's `args:` (YAML values), read as their LLAMASERVE_* variables would be, over
    the variables that are set, over the defaults."""
    names = _names()
    unknown = sorted(k for k in args if k not in names)
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)}; they are `llamaserve serve` "
                         "options without dashes (model, replicas, threads, ...)")
    merged = dict(os.environ if environ is None else environ)
    for key, value in args.items():
        if value is None:  # `model: null` in YAML: the default
            continue
        raw = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        merged[env_name(names[key])] = raw
    return ServerConfig.from_env(merged)


def replica_cpus(config: ServerConfig) -> float:
    return config.replica_cpus or float(config.n_threads or 1)


def server_options(config: ServerConfig) -> dict[str, Any]:
    """Options of the engine deployment (LlamaServer)."""
    slots = config.n_parallel
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replica_cpus(config), "num_gpus": config.replica_gpus},
        # A replica takes its slots' worth and as many waiting; the rest waits in the router,
        # where whichever replica frees a slot first (or a new one) takes it.
        "max_ongoing_requests": 2 * slots,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "health_check_timeout_s": 10.0,
        "graceful_shutdown_timeout_s": config.drain_timeout,
    }
    if config.prefix_affinity:
        options["request_router_config"] = RequestRouterConfig(request_router_class=ROUTER)
    if config.max_replicas:
        options["autoscaling_config"] = {
            "min_replicas": config.replicas,
            "initial_replicas": config.replicas,
            "max_replicas": config.max_replicas,
            # A CPU replica is as busy as it gets when every slot decodes.
            "target_ongoing_requests": config.target_ongoing_requests or slots,
            "upscale_delay_s": 10.0,  # a new replica loads its model: scale on load that stays
            "downscale_delay_s": 300.0,  # and keep it (its prefix cache) a while
        }
    else:
        options["num_replicas"] = config.replicas
    return options


def gateway_options(config: ServerConfig) -> dict[str, Any]:
    """The ingress: no engine, no CPU reserved; it only forwards bytes."""
    return {"ray_actor_options": {"num_cpus": 0}, "num_replicas": 1,
            "max_ongoing_requests": max(1000, 4 * config.n_parallel * (config.max_replicas or config.replicas))}
