"""`llamaserve serve`: run the app under uvicorn. Ctrl-C / SIGTERM stop accepting
connections, let in-flight requests finish (up to drain_timeout), then close the engine.
uvicorn's HTTP protocol is wrapped by the door's limits (door.py): header and body timeouts,
a cap on open connections."""
from __future__ import annotations

import logging
import math

import uvicorn

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from llamaserve.server.door import door_limits, guarded_protocol


def run(config: ServerConfig) -> None:
    """Build the app (a bad setting raises ValueError before anything starts), then serve."""
    app = create_app(config)
    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level, lifespan="on",
        ws="none", timeout_graceful_shutdown=math.ceil(config.drain_timeout),
        http=guarded_protocol(door_limits(config)), timeout_keep_alive=config.keep_alive_timeout))
    server.run()
