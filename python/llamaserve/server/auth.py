"""Authentication as pure ASGI middleware: API keys (compared in constant time) or JWTs
(HS* with a shared secret, RS*/PS*/ES* with a public key; exp and nbf checked by PyJWT).

Applies to every API family's paths (server/families.py), and to /metrics unless
--metrics-auth open; /health is always open. Two roles: any key or token may use the APIs;
operator routes and, with --metrics-auth admin, /metrics want an admin one (roles.py). Every
JWT must carry an exp at most --jwt-max-lifetime ahead; a token without a subject is its own
identity (for rate limits), never one shared "anonymous"."""
from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from llamaserve.config import ServerConfig
from llamaserve.server.errors import ApiError
from llamaserve.server.families import FAMILIES
from llamaserve.server.roles import ADMIN_SCOPE, AUTH_SCOPE_KEY, require_admin

MIN_HMAC_SECRET = 32  # bytes; RFC 7518 wants an HS256 key at least as long as the hash
CLOCK_SKEW = 60  # seconds an exp may exceed --jwt-max-lifetime by (issuers' clocks differ)


class Identity(NamedTuple):
    kind: str  # "key" | "jwt"
    id: str  # a digest of the key, the token's subject, or a digest of a token without one
    claims: dict[str, Any] | None = None
    admin: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def is_api_path(path: str) -> bool:
    """What auth and rate limits guard: every API family's paths (server/families.py)."""
    return FAMILIES.guarded(path)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _public_key(value: str | None) -> Any:
    if not value:
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # only when keys are set

    pem = value if value.lstrip().startswith("-----BEGIN") else Path(value).expanduser().read_text()
    return load_pem_public_key(pem.encode())


class Authenticator:
    def __init__(self, config: ServerConfig) -> None:
        self._keys = [_digest(k.encode()) for k in config.api_keys]
        self._admin_keys = [_digest(k.encode()) for k in config.admin_keys]
        self.metrics_auth = config.metrics_auth
        self._max_lifetime = config.jwt_max_lifetime
        self._secret = config.jwt_secret
        self._public_key = _public_key(config.jwt_public_key)
        algorithms = set(config.jwt_algorithms)
        if not algorithms:
            algorithms = ({"HS256"} if self._secret else set()) | ({"RS256"} if self._public_key else set())
        if "none" in {a.lower() for a in algorithms}:
            raise ValueError("--jwt-algorithms: 'none' is never accepted")
        if self._secret is not None:
            # RFC 7518: an HMAC key at least as long as the hash (HS256: 32 bytes, HS512: 64).
            needed = max([MIN_HMAC_SECRET] + [int(a[2:]) // 8 for a in algorithms
                                              if a.startswith("HS") and a[2:].isdigit()])
            if len(self._secret.encode()) < needed:
                raise ValueError(f"--jwt-secret: must be at least {needed} bytes")
        self._algorithms = frozenset(algorithms)
        self._audience = config.jwt_audience
        self._issuer = config.jwt_issuer
        self.enabled = config.auth_enabled

    def authenticate(self, scope: Scope) -> tuple[Identity | None, str]:
        """(identity, "") or (None, why not); computed once per request."""
        cached = scope.get(AUTH_SCOPE_KEY)
        if cached is None:
            cached = scope[AUTH_SCOPE_KEY] = self._authenticate(scope)
        return cached

    def _authenticate(self, scope: Scope) -> tuple[Identity | None, str]:
        token = _credential(scope)
        if token is None:
            return None, "missing API key or token"
        digest = _digest(token.encode())
        if self._keys or self._admin_keys:
            matched = admin = False
            for key in self._keys:  # no early exit: the time does not say which key matched
                matched |= hmac.compare_digest(key, digest)
            for key in self._admin_keys:
                admin |= hmac.compare_digest(key, digest)
            if matched or admin:
                return Identity("key", digest.hex()[:16], admin=admin), ""
        if (self._secret or self._public_key) and token.count(".") == 2:
            return self._verify_jwt(token, digest)
        return None, "invalid API key or token"

    def _verify_jwt(self, token: str, digest: bytes) -> tuple[Identity | None, str]:
        import jwt  # PyJWT and its cryptography: loaded by a server that takes tokens, not by every one

        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self._algorithms:
                return None, "token algorithm not accepted"
            key = self._secret if str(algorithm).startswith("HS") else self._public_key
            if key is None:
                return None, "token algorithm not accepted"
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=self._audience,
                                issuer=self._issuer, options={"require": ["exp"]})
        except jwt.MissingRequiredClaimError:
            return None, "token has no exp: every token must expire"
        except jwt.ExpiredSignatureError:
            return None, "token expired"
        except jwt.ImmatureSignatureError:
            return None, "token not valid yet"
        except jwt.InvalidTokenError:
            return None, "invalid API key or token"
        if not self._lifetime_ok(claims):
            return None, f"token lives too long: its exp may be at most {self._max_lifetime:g}s ahead"
        # No subject: the token itself is the identity, as an API key is.
        subject = str(claims.get("sub") or "") or "token-" + digest.hex()[:16]
        return Identity("jwt", subject, claims, admin=ADMIN_SCOPE in _scopes(claims)), ""

    def _lifetime_ok(self, claims: dict[str, Any]) -> bool:
        exp, iat = claims.get("exp"), claims.get("iat")
        limit = self._max_lifetime + CLOCK_SKEW
        if not isinstance(exp, (int, float)) or exp - time.time() > limit:
            return False
        return not isinstance(iat, (int, float)) or exp - iat <= limit


def _scopes(claims: dict[str, Any]) -> set[str]:
    """OAuth 2.0 scopes: "scope" as a space-separated string (RFC 8693), or "scp" as a list."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


def _credential(scope: Scope) -> str | None:
    authorization = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key or None


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    def protects(self, path: str) -> bool:
        return is_api_path(path) or (path == "/metrics" and self.auth.metrics_auth != "open")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and self.protects(scope["path"]):
            identity, reason = self.auth.authenticate(scope)
            if identity is None:
                error = ApiError(401, "UNAUTHORIZED", reason,
                                 "send 'Authorization: Bearer <API key or JWT>' or 'X-API-Key: <API key>'",
                                 {"WWW-Authenticate": 'Bearer realm="llamaserve"'})
                await error.response()(scope, receive, send)
                return
            if scope["path"] == "/metrics" and self.auth.metrics_auth == "admin":
                try:
                    require_admin(scope, "/metrics")
                except ApiError as error:
                    await error.response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)
