"""`llamaserve serve --ray`: run the application on a Ray cluster for users who never wrote
Ray: join the cluster RAY_ADDRESS names (`ray start --head` made one), else start a local
one; serve on --host/--port until Ctrl-C or SIGTERM, then take the application down."""
from __future__ import annotations

import os
import signal
import threading
import time

import ray
from ray import serve

from llamaserve.config import ServerConfig
from llamaserve.ray.application import build_application

APP_NAME = "llamaserve"


def run(config: ServerConfig) -> None:
    started = time.monotonic()
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, logging_level=config.log_level.upper()
             if config.log_level != "trace" else "DEBUG")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own (exit 15)
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(build_application(config), name=APP_NAME, route_prefix="/")
        print(f"llamaserve: {config.replicas} replica(s) ready in {time.monotonic() - started:.1f}s "
              f"on http://{config.host}:{config.port}", flush=True)
        stop.wait()
        serve.delete(APP_NAME)  # replicas drain their requests (drain_timeout), then stop
    finally:
        ray.shutdown()
