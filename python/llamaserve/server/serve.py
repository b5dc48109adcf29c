"""`llamaserve serve`: run the app under uvicorn. Before anything loads, the configured model
is looked up and the port bound (preflight.py, listen.py), so a wrong --model or a busy port
ends the command at once. Ctrl-C / SIGTERM stop accepting connections, let in-flight requests
finish (up to drain_timeout), then end what still runs (shutdown.py) and close the engine. uvicorn's HTTP protocol is wrapped by the
door's limits (door.py): header and body timeouts, a cap on open connections."""
from __future__ import annotations

import logging

import uvicorn

from llamaserve.config import ServerConfig
from llamaserve.server import vertex
from llamaserve.server.app import create_app
from llamaserve.server.door import MAX_HEADER_BYTES, door_limits, guarded_protocol
from llamaserve.server.listen import bind, hosts_of
from llamaserve.server.preflight import check_models
from llamaserve.server.shutdown import GracefulServer

log = logging.getLogger("llamaserve.server")


def run(config: ServerConfig) -> None:
    """Build the app, check its model and bind its port (each raises ValueError naming the
    flag before anything starts), then serve."""
    app = create_app(config)
    check_models(config, app.state.llamaserve.host)
    sockets = bind(config.host, vertex.port(config.port))
    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    port = sockets[0].getsockname()[1]
    server = GracefulServer(uvicorn.Config(
        app, host=hosts_of(config.host)[0], port=port, log_level=config.log_level, lifespan="on",
        ws="none", http=guarded_protocol(door_limits(config)), timeout_keep_alive=config.keep_alive_timeout,
        h11_max_incomplete_event_size=2 * MAX_HEADER_BYTES),  # the door answers 431 first
        config.drain_timeout, app.state.llamaserve.host.end_generations, app.state.llamaserve.tools.stop)
    # uvicorn names no address when it is handed sockets
    log.info("listening on %s (Ctrl-C to stop)", ", ".join(_url(s.getsockname()) for s in sockets))
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass  # uvicorn raises the Ctrl-C it caught again once it has stopped: no traceback
    finally:
        for sock in sockets:
            sock.close()


def _url(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
