"""`serve`'s command-line options, made from the config's fields: grouped by section in
--help with their defaults, and argument errors in one line naming the flag."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields
from typing import Any, NoReturn

from llamaserve.config import ServerConfig, env_name, read_value

# --help's sections, in order; every setting is in one (tests/test_server_cli.py checks).
SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "served_model_name", "model_tags", "strict_model_names", "models_dir", "models_config", "allow_model_paths"),
    "several models": ("max_memory", "max_models", "idle_unload", "auto_load", "load_wait",
                       "probe_timeout", "quantize_cache", "quantize_cache_size"),
    "listening and connections": ("host", "port", "cors_origins", "header_timeout", "body_timeout",
                                  "keep_alive_timeout", "max_connections", "max_body_bytes",
                                  "sse_ping", "drain_timeout", "log_level", "metrics", "slots_endpoint", "slot_save_path", "ui"),
    "engine": ("n_parallel", "n_ctx", "n_threads", "n_gpu_layers", "max_queue", "default_max_tokens",
               "default_seed", "default_temperature",
               "request_timeout", "max_batch_size", "reranking"),
    "KV cache and prefix cache": ("kv_cells", "kv_unified", "cache_ram", "cache_dir", "cache_disk", "cache_reuse",
                                  "cache_type_k", "cache_type_v", "flash_attn", "swa_full"),
    "speculative decoding": ("spec", "draft_model", "spec_draft_max"),
    "chat templates and reasoning models": ("chat_template", "chat_template_file", "chat_template_kwargs",
                                            "reasoning", "reasoning_format", "verbose", "reasoning_budget", "grammar_budget_ms"),
    "auth": ("api_keys", "admin_keys", "jwt_secret", "jwt_public_key", "jwt_algorithms",
             "jwt_audience", "jwt_issuer", "jwt_max_lifetime", "metrics_auth"),
    "llama-server's /tools and /cors-proxy (experimental; off by default)": (
        "tools", "mcp_servers_json", "mcp_servers_config", "ui_mcp_proxy"),
    "rate limits": ("rate_limit", "rate_limit_window", "rate_limit_redis", "rate_limit_redis_fallback"),
    "Ray Serve (pip install 'llamaserve[ray]')": (
        "ray", "replicas", "max_replicas", "target_ongoing_requests", "replica_cpus", "replica_gpus",
        "prefix_affinity"),
}


class OneLineErrors(argparse.ArgumentParser):
    """An argument error is one line naming the flag, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, each under its section; each also reads its
    LLAMASERVE_* variable."""
    by_name = {f.name: f for f in fields(ServerConfig)}
    for title, names in SECTIONS.items():
        group = parser.add_argument_group(title)
        for name in names:
            _add(group, by_name[name])


def _add(group: argparse._ArgumentGroup, f: Field[Any]) -> None:
    flag = f.metadata["flag"]
    help_text = f"{f.metadata['help']}{_default_of(f)} [env {env_name(f.name)}]"
    if str(f.type) == "bool":
        group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        return

    def read(raw: str) -> Any:
        try:
            return read_value(f.type, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    group.add_argument(flag, dest=f.name, default=None, metavar=flag.lstrip("-").replace("-", "_").upper(),
                       type=read, help=help_text)


def _default_of(f: Field[Any]) -> str:
    """' (default: X)' where the default is a value; help texts already say what None means."""
    default = f.default
    if default is MISSING or default is None or default == () or "(default" in f.metadata["help"]:
        return ""
    if isinstance(default, bool):
        return " (default: on)" if default else " (default: off)"
    return f" (default: {default})"
