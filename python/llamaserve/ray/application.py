"""The Ray Serve application: a Gateway (ingress) in front of LlamaServer replicas."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import Application

from llamaserve.config import ServerConfig
from llamaserve.ray.gateway import Gateway
from llamaserve.ray.replica import LlamaServer
from llamaserve.ray.settings import config_from_args, gateway_options, server_options


def build_application(config: ServerConfig) -> Application:
    servers = serve.deployment(LlamaServer, name="LlamaServer", **server_options(config))
    gateway = serve.deployment(serve.ingress()(Gateway), name="Gateway", **gateway_options(config))
    return gateway.bind(servers.bind(config), config)


def app(args: Mapping[str, Any]) -> Application:
    """The builder `serve run llamaserve.ray:app model=... replicas=2` and a Serve config
    file's `import_path: llamaserve.ray:app` call with their arguments."""
    return build_application(config_from_args(args))
