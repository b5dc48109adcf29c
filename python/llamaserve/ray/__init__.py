"""llamaserve as a Ray Serve application (the optional extra: pip install 'llamaserve[ray]').

    serve run llamaserve.ray:app model=path/to/model.gguf replicas=2
    llamaserve serve --ray --replicas 2

Layout: settings.py (ServerConfig -> deployment options), affinity.py (prompt prefix keys),
router.py (the request router), gateway.py (the HTTP ingress), replica.py (one engine and
the app per replica), failures.py (errors when a replica fails), launch.py (`--ray`).
Only this package imports Ray; the rest of llamaserve never does.
"""
from __future__ import annotations

try:
    import ray.serve  # noqa: F401 - fail here, with the fix, rather than deep inside
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("llamaserve.ray needs Ray Serve: pip install 'llamaserve[ray]'") from exc

from llamaserve.ray.application import app, build_application

__all__ = ["app", "build_application"]
