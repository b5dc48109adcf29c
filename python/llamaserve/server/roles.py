"""The two roles of an authenticated request: every key and token may use the APIs; operator
routes (model load, unload, quantize) and, with --metrics-auth admin, /metrics want an admin
key (--admin-keys) or a token whose scope holds ADMIN_SCOPE. Apart from auth.py so that route
modules can ask without importing the API families that auth.py reads."""
from __future__ import annotations

from starlette.types import Scope

from llamaserve.server.errors import ApiError

AUTH_SCOPE_KEY = "llamaserve.auth"  # where auth.py keeps (identity, why not) in the ASGI scope
ADMIN_SCOPE = "llamaserve:admin"  # in a JWT's scope (space-separated) or scp claim


def require_admin(scope: Scope, what: str) -> None:
    """In an operator route: 403 unless the request came with an admin key or token. With
    auth off there is no identity, and every client is trusted, as on every other route."""
    found = scope.get(AUTH_SCOPE_KEY)
    if found is not None and (found[0] is None or not found[0].admin):
        raise ApiError(403, "FORBIDDEN", f"{what} needs an admin key",
                       f"send a key from --admin-keys, or a token with the scope {ADMIN_SCOPE}")
