"""The server's settings: one frozen dataclass, filled from defaults, LLAMASERVE_* variables
and command-line options (in rising order of precedence)."""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from llamaserve.errors import InvalidRequest
from llamaserve.generation_params import validate
from llamaserve.native import MAX_STEP_DRAFTS, MIN_REUSE_CHUNK
from llamaserve.server.chat.templates import BUILTIN_TEMPLATES

ENV_PREFIX = "LLAMASERVE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# The choices llama.cpp takes (Engine.load checks them too).
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
FLASH_ATTN_MODES = ("auto", "on", "off")
SPEC_MODES = ("ngram", "draft", "off")
# Reuse past a divergence: off by default, for its drift after an edited message (measured:
# README, "Reuse past a divergence"); 64 is what benchmarks/cache_reuse_drift.py measured.
DEFAULT_CACHE_REUSE = 0
METRICS_AUTH = ("key", "admin", "open")


def _opt(flag: str, help: str, default: Any = MISSING, **extra: Any) -> Any:
    """A config field with its command-line flag; the variable is LLAMASERVE_<FLAG>."""
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


@dataclass(frozen=True)
class ServerConfig:
    model: str | None = _opt("--model", "GGUF file path, or a model name in --models-dir "
                             "(default: the embedded SmolLM2-135M-Instruct)", None)
    served_model_name: tuple[str, ...] = _opt(
        "--served-model-name", "comma-separated names the --model answers to and is listed under "
        "(vLLM's flag; e.g. gpt-4o-mini for clients that hard-code a name); the first is the name "
        "responses carry", ())
    models_dir: str | None = _opt("--models-dir", "folder of *.gguf files to list and load by name "
                                  "(default: ~/.cache/llamaserve/models)", None)
    # -- several models (llamaserve.models) --
    models_config: str | None = _opt("--models-config", "TOML file naming models, with per-model "
                                     "n_ctx, n_parallel and chat_template", None)
    max_memory: str | None = _opt("--max-memory", "memory the loaded models may use, e.g. 8GB "
                                  "(estimated before loading: weights + KV cache + compute "
                                  "buffers); the least recently used idle model is unloaded to "
                                  "make room (default: no limit)", None)
    max_models: int = _opt("--max-models", "models loaded at once (0: no limit); loading one more "
                           "retires the least recently used", 0)
    idle_unload: float = _opt("--idle-unload", "unload a model no request used for this many "
                              "seconds (0: never)", 0.0)
    auto_load: bool = _opt("--auto-load", "load a model a request names on first use (OpenAI, "
                           "Anthropic, Ollama and llama-server routes; the native /api/v1 answers "
                           "MODEL_NOT_LOADED); --no-auto-load: every API answers it", True)
    model_tags: tuple[str, ...] = _opt("--tags", "comma-separated tags /v1/models lists with the --model "
                                       "(llama-server's)", ())
    strict_model_names: bool = _opt("--strict-model-names", "answer 404 to a model name the one "
                                    "loaded model does not have (default: it serves any name on "
                                    "the OpenAI, Anthropic and llama-server routes)", False)
    allow_model_paths: bool = _opt("--allow-model-paths", "let requests name GGUF files by path "
                                   "(default: names in the models folder only)", False)
    quantize_cache: str | None = _opt("--quantize-cache", "folder for models quantized on load "
                                      "(default: ~/.cache/llamaserve/quantized)", None)
    quantize_cache_size: str = _opt("--quantize-cache-size", "disk the --quantize-cache may fill, e.g. "
                                    "50GB; least recently used results no loaded model uses make room, "
                                    "beyond that a load with quantization is 507", "32GB")
    probe_timeout: float = _opt("--probe-timeout", "seconds a model file's load probe may take (each file "
                                "is first loaded once in a child process, where a llama.cpp abort on a "
                                "damaged file cannot end the server; 0: files are loaded unprobed)", 300.0)
    load_wait: float = _opt("--load-wait", "seconds a load request waits before answering 202 "
                            "(the load goes on; GET /api/v1/models shows its progress)", 30.0)
    host: str = _opt("--host", "address to listen on", "127.0.0.1")
    port: int = _opt("--port", "port to listen on", 8000)
    # -- the door: connections and how long a request may take to arrive (server/door.py) --
    header_timeout: float = _opt("--header-timeout", "seconds a request's line and headers may take "
                                 "to arrive, from the connection or the previous response (then 408 "
                                 "and the connection is closed)", 10.0)
    body_timeout: float = _opt("--body-timeout", "seconds a request body may take to arrive after its "
                               "headers (then 408 and the connection is closed)", 30.0)
    keep_alive_timeout: float = _opt("--keep-alive-timeout", "seconds an idle connection is kept "
                                     "open between requests", 5.0)
    max_connections: int = _opt("--max-connections", "open connections at once; one more is answered "
                                "503 and closed", 1000)
    n_parallel: int = _opt("--parallel", "requests decoded together (slots)", 4)
    n_ctx: int = _opt("--ctx", "context size of each request, prompt and completion together", 4096)
    # -- KV cache and prefix cache --
    kv_cells: int = _opt("--kv-cells", "KV cache cells in all, split evenly over the slots or, with "
                         "--kv-unified, one pool (0: --ctx for every slot, less if the machine's free "
                         "memory cannot hold that)", 0)
    kv_unified: bool = _opt("--kv-unified", "one KV pool that requests take from by need (prompt + "
                            "max_tokens), waiting while it is promised to running ones; off: an equal "
                            "private share per slot, which decodes faster with many slots", False)
    cache_ram: str = _opt("--cache-ram", "host memory for prefix snapshots, e.g. 2GB: a shared prompt "
                          "prefix evicted from the slots comes back from here without recompute (0: off)",
                          "1GB")
    cache_dir: str | None = _opt("--cache-dir", "folder for prefix snapshots on disk (made if missing): "
                                 "every prefix snapshot is also written there, so that a "
                                 "restarted server answers the next turn of a long conversation without "
                                 "prefilling it again. Read only by the same model file with the same KV "
                                 "settings (default: no disk tier)", None)
    cache_disk: str = _opt("--cache-disk", "disk the --cache-dir's snapshot files may take in all, e.g. "
                           "20GB; least recently used files out", "8GB")
    cache_reuse: int = _opt("--cache-reuse", "reuse past a divergence: when a prompt leaves the cache "
                            "(a changed first line, an edited message) and goes on with text the cache "
                            "holds, reuse the cached chunks of at least this many tokens at their new "
                            "positions instead of prefilling them (an approximation; README, \"Reuse past "
                            "a divergence\"). After new tokens only with --kv-unified. 0: off, else at "
                            f"least {MIN_REUSE_CHUNK}, e.g. 64", DEFAULT_CACHE_REUSE)
    cache_type_k: str = _opt("--cache-type-k", "KV cache type of K: f32, f16, bf16, q8_0, q4_0, q4_1, "
                             "iq4_nl, q5_0, q5_1", "f16")
    cache_type_v: str = _opt("--cache-type-v", "KV cache type of V (a quantized V needs --flash-attn)", "f16")
    flash_attn: str = _opt("--flash-attn", "flash attention: auto, on or off", "auto")
    swa_full: bool = _opt("--swa-full", "full-size cache for sliding-window layers (more memory; a "
                          "cached prefix is reusable at any length, not only where it was saved)", False)
    # -- speculative decoding --
    spec: str | None = _opt("--spec", "speculative decoding: ngram (drafts from the request's own "
                            "prompt and output; the default), draft (from --draft-model; the default "
                            "with one) or off. Drafts are verified several tokens a step, as many as "
                            "this machine's step costs and their acceptance make worth it", None)
    draft_model: str | None = _opt("--draft-model", "GGUF of a smaller model with the same vocabulary "
                                   "that drafts tokens for the served one", None)
    spec_draft_max: int = _opt("--spec-draft-max", "drafted tokens one request may verify in one step "
                               f"(1 to {MAX_STEP_DRAFTS})", 16)
    n_threads: int = _opt("--threads", "CPU threads for decoding (0: automatic)", 0)
    n_gpu_layers: int = _opt("--gpu-layers", "layers to offload to a GPU (-1: all)", 0)
    max_queue: int = _opt("--max-queue", "requests that may wait for a slot; beyond it 503", 256)
    default_max_tokens: int = _opt("--default-max-tokens",
                                   "max_tokens of a request that names none", 256)
    default_seed: int | None = _opt("--seed", "seed of a request that names none (default: a random one each)",
                                    None)
    default_temperature: float | None = _opt("--temp", "temperature of a request that names none "
                                             "(default: the API's own)", None)
    reranking: bool = _opt("--reranking", "serve the model as a reranker (/rerank), as llama-server's "
                           "--reranking: scored with pooling type rank whatever its GGUF says (a model "
                           "without a classification head scores with its last token's first hidden value); "
                           "a GGUF whose pooling type is rank reranks without it", False)
    # -- chat: templates and reasoning models --
    chat_template: str | None = _opt("--chat-template", "chat template of every model the models config "
                                     "gives none: a built-in's name (" + ", ".join(BUILTIN_TEMPLATES) +
                                     ") or Jinja source", None)
    chat_template_file: str | None = _opt("--chat-template-file", "the same, read from a Jinja file", None)
    chat_template_kwargs: str | None = _opt("--chat-template-kwargs", "JSON object of variables every chat "
                                            "template gets (e.g. '{\"enable_thinking\": false}'); a request's "
                                            "chat_template_kwargs win", None)
    reasoning_format: str = _opt("--reasoning-format", "auto: reasoning apart from the answer "
                                 "(reasoning_content, thinking blocks, reasoning items); none: left in the "
                                 "content, for clients that parse it", "auto")
    verbose: bool = _opt("--verbose", "every answer of the OpenAI and llama-server routes carries __verbose "
                         "(the prompt the template made), as llama-server's --verbose; a request's verbose "
                         "wins", False)
    reasoning: str = _opt("--reasoning", "thinking of a request that does not say, as llama-server's "
                          "--reasoning: on, off, or auto (the same as on: templates with a thinking switch get "
                          "it on; one without it does what it always does)", "auto")
    grammar_budget_ms: int = _opt("--grammar-budget-ms", "milliseconds one request's grammar may take in one "
                                  "decoding step before the request ends with a 400 (0: no limit)", 250)
    reasoning_budget: int = _opt("--reasoning-budget", "most tokens a reply may reason before the engine "
                                 "closes its reasoning (-1: no limit); requests may ask for less", -1)
    api_keys: tuple[str, ...] = _opt("--api-keys", "comma-separated API keys; any one is accepted "
                                     "(auth is off when no key or JWT setting is given)", ())
    admin_keys: tuple[str, ...] = _opt("--admin-keys", "comma-separated API keys that may also load, "
                                       "unload and quantize models (operator routes); with auth on, other "
                                       "keys and tokens get 403 there", ())
    jwt_secret: str | None = _opt("--jwt-secret", "secret for HS256 JWTs", None)
    jwt_public_key: str | None = _opt("--jwt-public-key", "PEM public key (or a PEM file's path) "
                                      "for RS256 JWTs", None)
    jwt_algorithms: tuple[str, ...] = _opt("--jwt-algorithms", "accepted JWT algorithms "
                                           "(default: HS256 with a secret, RS256 with a key)", ())
    jwt_audience: str | None = _opt("--jwt-audience", "required JWT audience (aud)", None)
    jwt_issuer: str | None = _opt("--jwt-issuer", "required JWT issuer (iss)", None)
    jwt_max_lifetime: float = _opt("--jwt-max-lifetime", "seconds a JWT may be valid for: its exp (which "
                                   "every token must carry) at most this far ahead", 86400.0)
    metrics_auth: str = _opt("--metrics-auth", "who may read /metrics when auth is on: key (any API key "
                             "or token), admin (--admin-keys) or open", "key")
    metrics: bool = _opt("--metrics", "answer GET /metrics (--no-metrics: 501, as llama-server without "
                         "--metrics)", True)
    ui: bool = _opt("--ui", "serve the playground at / (--no-ui: 404 there, as llama-server)", True)
    slots_endpoint: bool = _opt("--slots", "answer llama-server's GET /slots (--no-slots: 501, as "
                                "llama-server)", True)
    slot_save_path: str | None = _opt("--slot-save-path", "folder for llama-server's slot files (POST "
                                      "/slots/ID?action=save|restore, made if missing); without it those "
                                      "actions are refused", None)
    rate_limit: int = _opt("--rate-limit", "requests per window per client to /api/v1 and /v1 "
                           "(0: off)", 0)
    rate_limit_window: float = _opt("--rate-limit-window", "rate limit window in seconds", 60.0)
    max_body_bytes: int = _opt("--max-body-bytes", "largest request body accepted", 4 * 1024 * 1024)
    max_batch_size: int = _opt("--max-batch-size", "most requests in one batch call", 32)
    cors_origins: tuple[str, ...] = _opt("--cors-origins", "comma-separated origins allowed by CORS: exact "
                                         "origins, 'localhost' (any page served from this machine: localhost, "
                                         "127.0.0.1, [::1], any port, as llama-server), '*' for any, or '' for "
                                         "none", ("localhost",))
    # -- llama-server's /tools and /cors-proxy (server/tools/): off unless asked for --
    tools: tuple[str, ...] = _opt("--tools", "comma-separated built-in tools /tools serves, or 'all': read_file, "
                                  "file_glob_search, grep_search, exec_shell_command, write_file, edit_file, "
                                  "get_info. They read and write files and run commands with the server's "
                                  "rights: enable them only on a trusted machine, with --api-keys when others "
                                  "can reach the port (default: none)", ())
    mcp_servers_json: str | None = _opt("--mcp-servers-json", "MCP servers whose tools /tools serves, as JSON: "
                                        "{\"mcpServers\": {NAME: {\"command\", \"args\", \"env\", \"cwd\", "
                                        "\"timeout_ms\"}}}; each is a child process with the server's rights", None)
    mcp_servers_config: str | None = _opt("--mcp-servers-config", "file holding --mcp-servers-json's JSON", None)
    ui_mcp_proxy: bool = _opt("--ui-mcp-proxy", "answer /cors-proxy?url=...: fetch any http(s) URL for a "
                              "browser page (a web UI reaching remote MCP servers); this server then reaches "
                              "whatever the caller names: enable only on a trusted machine (off: 403)", False)
    request_timeout: float = _opt("--request-timeout", "seconds a generation may take, queueing included, "
                                  "before it is cancelled with 504 (0: no limit)", 0.0)
    sse_ping: float = _opt("--sse-ping", "seconds of silence after which a stream sends an SSE comment "
                           "(': ping') so proxies keep it open while a request waits or prefills "
                           "(0: never)", 10.0)
    drain_timeout: float = _opt("--drain-timeout", "seconds to let in-flight requests finish on "
                                "shutdown", 60.0)
    log_level: str = _opt("--log-level", "log level: " + ", ".join(LOG_LEVELS), "info")
    # -- shared rate limits, and serving as a Ray Serve application (llamaserve[ray]) --
    rate_limit_redis: str | None = _opt("--rate-limit-redis", "Redis URL (redis://host:6379/0) where "
                                        "--rate-limit counts, so the limit holds across processes "
                                        "and replicas (default: counted in this process)", None)
    rate_limit_redis_fallback: str = _opt("--rate-limit-redis-fallback", "while Redis cannot be "
                                          "reached: 'local' (count in this process; each process "
                                          "allows the full limit) or 'deny' (503)", "local")
    ray: bool = _opt("--ray", "serve as a Ray Serve application (pip install 'llamaserve[ray]'): "
                     "joins the cluster RAY_ADDRESS names, else starts a local one", False)
    replicas: int = _opt("--replicas", "engine replicas under --ray (the minimum when autoscaling)", 1)
    max_replicas: int = _opt("--max-replicas", "under --ray, autoscale up to this many replicas on "
                             "ongoing requests per replica (0: a fixed --replicas)", 0)
    target_ongoing_requests: float = _opt("--target-ongoing-requests", "autoscaling target: "
                                          "requests per replica (0: --parallel)", 0.0)
    replica_cpus: float = _opt("--replica-cpus", "CPUs Ray reserves for each replica (0: --threads, "
                               "or 1 when --threads is automatic)", 0.0)
    replica_gpus: float = _opt("--replica-gpus", "GPUs Ray reserves for each replica (with "
                               "--gpu-layers -1 and a CUDA build)", 0.0)
    prefix_affinity: bool = _opt("--prefix-affinity", "under --ray, send a request whose prompt "
                                 "starts like an earlier one to the replica that served it (its "
                                 "prefix cache), unless that replica is busier than the others", True)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"{flag_of(name)}: {what}")

        need(0 <= self.port <= 65535, "port", "must be between 0 and 65535")
        need(self.n_parallel >= 1, "n_parallel", "must be at least 1")
        need(self.n_ctx >= 8, "n_ctx", "must be at least 8")
        need(self.cache_reuse == 0 or self.cache_reuse >= MIN_REUSE_CHUNK, "cache_reuse",
             f"must be 0 (off) or at least {MIN_REUSE_CHUNK}")
        need(self.n_threads >= 0, "n_threads", "must not be negative")
        need(self.kv_cells >= 0, "kv_cells", "must not be negative")
        need(self.flash_attn in FLASH_ATTN_MODES, "flash_attn", "must be one of " + ", ".join(FLASH_ATTN_MODES))
        for name in ("cache_type_k", "cache_type_v"):
            need(getattr(self, name) in KV_CACHE_TYPES, name, "must be one of " + ", ".join(KV_CACHE_TYPES))
        need(self.spec is None or self.spec in SPEC_MODES, "spec", "must be one of " + ", ".join(SPEC_MODES))
        need((self.spec == "draft") <= (self.draft_model is not None), "spec",
             "draft needs a --draft-model")
        need(1 <= self.spec_draft_max <= MAX_STEP_DRAFTS, "spec_draft_max",
             f"must be between 1 and {MAX_STEP_DRAFTS}")
        need(self.max_queue >= 0, "max_queue", "must not be negative")
        need(self.default_max_tokens >= 1, "default_max_tokens", "must be at least 1")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "jwt_max_lifetime"):
            need(getattr(self, name) > 0, name, "must be positive")
        need(self.max_connections >= 1, "max_connections", "must be at least 1")
        need(self.probe_timeout >= 0, "probe_timeout", "must not be negative")
        need(self.metrics_auth in METRICS_AUTH, "metrics_auth", "must be one of " + ", ".join(METRICS_AUTH))
        need(all(self.admin_keys), "admin_keys", "must not contain an empty key")
        need(self.reasoning_format in ("auto", "none"), "reasoning_format", "must be auto or none")
        need(self.reasoning in ("on", "off", "auto"), "reasoning", "must be on, off or auto")
        from llamaserve.server.tools.builtin import NAMES as TOOL_NAMES

        unknown = [name for name in self.tools if name != "all" and name not in TOOL_NAMES]
        need(not unknown, "tools", f"unknown tool {', '.join(unknown)}; the tools are all, " + ", ".join(TOOL_NAMES))
        need(0 <= self.grammar_budget_ms <= 60_000, "grammar_budget_ms", "must be between 0 and 60000")
        need(self.reasoning_budget == -1 or self.reasoning_budget >= 1, "reasoning_budget",
             "must be at least 1 (or -1: no limit)")
        if self.chat_template_kwargs is not None:
            need(_json_object(self.chat_template_kwargs), "chat_template_kwargs", "must be a JSON object")
        need(self.rate_limit >= 0, "rate_limit", "must not be negative")
        need(self.rate_limit_window > 0, "rate_limit_window", "must be positive")
        need(self.max_body_bytes >= 1, "max_body_bytes", "must be positive")
        need(self.max_batch_size >= 1, "max_batch_size", "must be at least 1")
        need(self.drain_timeout >= 0, "drain_timeout", "must not be negative")
        need(self.request_timeout >= 0, "request_timeout", "must not be negative")
        need(self.sse_ping >= 0, "sse_ping", "must not be negative")
        need(self.log_level in LOG_LEVELS, "log_level", "must be one of " + ", ".join(LOG_LEVELS))
        need(all(self.api_keys), "api_keys", "must not contain an empty key")
        need(all(n.strip() for n in self.served_model_name), "served_model_name", "must not contain an empty name")
        need(self.max_models >= 0, "max_models", "must not be negative")
        need(self.idle_unload >= 0, "idle_unload", "must not be negative")
        need(self.load_wait >= 0, "load_wait", "must not be negative")
        need(self.rate_limit_redis is None or self.rate_limit_redis.startswith(("redis://", "rediss://", "unix://")),
             "rate_limit_redis", "must be a redis://, rediss:// or unix:// URL")
        need(self.rate_limit_redis_fallback in ("local", "deny"), "rate_limit_redis_fallback",
             "must be local or deny")
        need(self.replicas >= 1, "replicas", "must be at least 1")
        need(self.max_replicas == 0 or self.max_replicas >= self.replicas, "max_replicas",
             "must be 0 or at least replicas")
        need(self.target_ongoing_requests >= 0, "target_ongoing_requests", "must not be negative")
        need(self.replica_cpus >= 0, "replica_cpus", "must not be negative")
        need(self.replica_gpus >= 0, "replica_gpus", "must not be negative")
        if self.max_memory is not None:
            need(_size("max_memory", self.max_memory) > 0, "max_memory", "must be positive")
        _size("cache_ram", self.cache_ram)
        need(_size("cache_disk", self.cache_disk) > 0, "cache_disk", "must be positive")
        _size("quantize_cache_size", self.quantize_cache_size)
        need(self.chat_template is None or self.chat_template_file is None, "chat_template_file",
             "cannot be combined with chat_template")
        try:
            self.request_defaults  # noqa: B018 - each checked by its parameter's one validator
        except InvalidRequest as exc:
            raise ValueError(f"{exc}".replace("max_tokens", "default_max_tokens", 1)) from None
        template = self.template_override  # a file that cannot be read is refused before serving
        need(template is None or template in BUILTIN_TEMPLATES or "{{" in template or "{%" in template,
             "chat_template", "must be a built-in's name (" + ", ".join(BUILTIN_TEMPLATES) + ") or Jinja source")

    @cached_property
    def template_override(self) -> str | None:
        """--chat-template, or the text of --chat-template-file (read once, as llama-server does)."""
        if self.chat_template_file is None:
            return self.chat_template
        try:
            with open(self.chat_template_file, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"chat_template_file: cannot read {self.chat_template_file}: {exc}") from None

    @cached_property
    def request_defaults(self) -> dict[str, Any]:
        """What a request gets for the parameters it leaves out (checked by their one validator,
        once); read-only: callers copy it."""
        defaults: dict[str, Any] = {"max_tokens": self.default_max_tokens}
        if self.default_seed is not None:
            defaults["seed"] = self.default_seed
        if self.default_temperature is not None:
            defaults["temperature"] = self.default_temperature
        return validate(defaults)

    @property
    def max_memory_bytes(self) -> int | None:
        return None if self.max_memory is None else _size("max_memory", self.max_memory)

    @property
    def cache_ram_bytes(self) -> int:
        return _size("cache_ram", self.cache_ram)

    @property
    def cache_disk_bytes(self) -> int:
        return _size("cache_disk", self.cache_disk)

    @property
    def quantize_cache_bytes(self) -> int:
        return _size("quantize_cache_size", self.quantize_cache_size)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys or self.jwt_secret or self.jwt_public_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then LLAMASERVE_* variables, then the overrides that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                try:
                    values[f.name] = read_value(f.type, raw)
                except ValueError as exc:
                    raise ValueError(f"{env_name(f.name)}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_options(self, **options: Any) -> ServerConfig:
        return replace(self, **{k: v for k, v in options.items() if v is not None})

    def __repr__(self) -> str:  # never print secrets
        shown = {f.name: ("***" if _is_secret(f.name) and getattr(self, f.name) else getattr(self, f.name))
                 for f in fields(self)}
        return "ServerConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _size(name: str, text: str) -> int:
    from llamaserve.models.memory import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{flag_of(name)}: {exc}") from None


SECRET_FIELDS = ("api_keys", "admin_keys", "jwt_secret", "rate_limit_redis")  # a Redis URL may hold a password


def _is_secret(name: str) -> bool:
    return name in SECRET_FIELDS


def secret_env_names() -> frozenset[str]:
    """The LLAMASERVE_* variables that hold secrets: never passed to a child a tool runs."""
    return frozenset(env_name(name) for name in SECRET_FIELDS)


def flag_of(field_name: str) -> str:
    """The command-line flag of a setting: what its errors name."""
    return _field(field_name).metadata["flag"]


def env_name(field_name: str) -> str:
    return ENV_PREFIX + flag_of(field_name).lstrip("-").replace("-", "_").upper()


def _field(name: str) -> Any:
    return next(f for f in fields(ServerConfig) if f.name == name)


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def read_value(kind: Any, raw: str) -> Any:
    """A setting's value from its text (a flag's argument or a variable); ValueError if unreadable."""
    kind = str(kind).removesuffix(" | None")  # optional: unset unless given
    try:
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"cannot read {raw!r} as {_KIND_WORDS.get(kind, kind)}") from None
    return raw or None


_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "on or off"}


def from_arguments(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServerConfig:
    return ServerConfig.from_env(environ, **{f.name: getattr(args, f.name, None) for f in fields(ServerConfig)})
