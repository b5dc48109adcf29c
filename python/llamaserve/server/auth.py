"""Authentication as pure ASGI middleware: API keys (compared in constant time) or JWTs
(HS* with a shared secret, RS*/PS*/ES* with a public key; exp and nbf checked by PyJWT).

Applies to /api/v1, /v1, /tokenize and /detokenize, and to /metrics when configured; /health
is always open."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.types import ASGIApp, Receive, Scope, Send

from llamaserve.config import ServerConfig
from llamaserve.server.errors import ApiError

_SCOPE_KEY = "llamaserve.auth"
MIN_HMAC_SECRET = 32  # bytes; RFC 7518 wants an HS256 key at least as long as the hash


class Identity(NamedTuple):
    kind: str  # "key" | "jwt"
    id: str  # a digest of the key, or the token's subject
    claims: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


# What auth and rate limits guard: both APIs and llama-server's endpoints.
API_PREFIXES = ("/api/v1", "/v1", "/tokenize", "/detokenize")


def is_api_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _public_key(value: str | None) -> Any:
    if not value:
        return None
    pem = value if value.lstrip().startswith("-----BEGIN") else Path(value).expanduser().read_text()
    return load_pem_public_key(pem.encode())


class Authenticator:
    def __init__(self, config: ServerConfig) -> None:
        self._keys = [_digest(k.encode()) for k in config.api_keys]
        self._secret = config.jwt_secret
        self._public_key = _public_key(config.jwt_public_key)
        algorithms = set(config.jwt_algorithms)
        if not algorithms:
            algorithms = ({"HS256"} if self._secret else set()) | ({"RS256"} if self._public_key else set())
        if "none" in {a.lower() for a in algorithms}:
            raise ValueError("jwt_algorithms: 'none' is never accepted")
        if self._secret is not None:
            # RFC 7518: an HMAC key at least as long as the hash (HS256: 32 bytes, HS512: 64).
            needed = max([MIN_HMAC_SECRET] + [int(a[2:]) // 8 for a in algorithms
                                              if a.startswith("HS") and a[2:].isdigit()])
            if len(self._secret.encode()) < needed:
                raise ValueError(f"jwt_secret: must be at least {needed} bytes")
        self._algorithms = frozenset(algorithms)
        self._audience = config.jwt_audience
        self._issuer = config.jwt_issuer
        self.enabled = config.auth_enabled

    def authenticate(self, scope: Scope) -> tuple[Identity | None, str]:
        """(identity, "") or (None, why not); computed once per request."""
        cached = scope.get(_SCOPE_KEY)
        if cached is None:
            cached = scope[_SCOPE_KEY] = self._authenticate(scope)
        return cached

    def _authenticate(self, scope: Scope) -> tuple[Identity | None, str]:
        token = _credential(scope)
        if token is None:
            return None, "missing API key or token"
        if self._keys:
            digest = _digest(token.encode())
            matched = False
            for key in self._keys:  # no early exit: the time does not say which key matched
                matched |= hmac.compare_digest(key, digest)
            if matched:
                return Identity("key", digest.hex()[:16]), ""
        if (self._secret or self._public_key) and token.count(".") == 2:
            return self._verify_jwt(token)
        return None, "invalid API key or token"

    def _verify_jwt(self, token: str) -> tuple[Identity | None, str]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self._algorithms:
                return None, "token algorithm not accepted"
            key = self._secret if str(algorithm).startswith("HS") else self._public_key
            if key is None:
                return None, "token algorithm not accepted"
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=self._audience,
                                issuer=self._issuer)
        except jwt.ExpiredSignatureError:
            return None, "token expired"
        except jwt.ImmatureSignatureError:
            return None, "token not valid yet"
        except jwt.InvalidTokenError:
            return None, "invalid API key or token"
        return Identity("jwt", str(claims.get("sub") or "anonymous"), claims), ""


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
    def __init__(self, app: ASGIApp, authenticator: Authenticator, protect_metrics: bool) -> None:
        self.app = app
        self.auth = authenticator
        self.protect_metrics = protect_metrics

    def protects(self, path: str) -> bool:
        return is_api_path(path) or (self.protect_metrics and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and self.protects(scope["path"]):
            identity, reason = self.auth.authenticate(scope)
            if identity is None:
                error = ApiError(401, "UNAUTHORIZED", reason,
                                 "send 'Authorization: Bearer <API key or JWT>' or 'X-API-Key: <API key>'",
                                 {"WWW-Authenticate": 'Bearer realm="llamaserve"'})
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
