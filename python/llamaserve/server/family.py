"""An API family's one declaration: the paths it owns, its routes and OpenAPI paths, how its
errors look (as a JSON body and as an event in a stream it started), and where the prompt is
in its generation requests (for prefix-affinity routing on Ray). The error renderer, auth,
rate limits and the Ray gateway read these; nothing else keeps a table of path prefixes."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.routing import Route

from llamaserve.server import sse
from llamaserve.server.errors import ApiError

if TYPE_CHECKING:
    from llamaserve.hosting.loaded import LoadedModel
    from llamaserve.server.generation import GenerationService

PromptPieces = Callable[[dict[str, Any]], list[str]]
MetricsSection = Callable[["LoadedModel"], str]  # a family's own /metrics text for one model


@dataclass(frozen=True)
class ApiFamily:
    name: str
    prefixes: tuple[str, ...]  # a path is the family's if it is one of these or below one
    routes: Callable[[GenerationService], list[Route]]
    openapi_paths: Mapping[str, Any]
    error_body: Callable[[ApiError], dict[str, Any]]
    stream_error: Callable[[str, ApiError], bytes]  # (path, error) -> the event that ends a stream
    prompt_pieces: Mapping[str, PromptPieces] = field(default_factory=dict)  # generation path -> its prompt
    guarded: bool = True  # API keys and rate limits apply
    metrics: Callable[[], MetricsSection] | None = None  # makes (once per app) its own /metrics series
    # A request naming a model that is not loaded loads it (unless --no-auto-load); else the
    # spec's 409 MODEL_NOT_LOADED. Read by GenerationService.lease.
    loads_on_demand: bool = False
    # With one model loaded, any model name is served by it, as llama-server does (unless
    # --strict-model-names); with several, an unknown name is a 404 listing them.
    lenient_names: bool = False

    def owns(self, path: str) -> int:
        """How specifically this family owns `path`: the length of its matching prefix, or 0."""
        return max((len(p) for p in self.prefixes if path == p or path.startswith(p + "/")), default=0)

    def error_response(self, error: ApiError) -> JSONResponse:
        return JSONResponse(self.error_body(error), status_code=error.status, headers=error.headers)


class Families:
    """The families an app serves; a path belongs to the one with the longest matching prefix
    (/v1/messages is Anthropic's, the rest of /v1 OpenAI's)."""

    def __init__(self, families: Sequence[ApiFamily]) -> None:
        self.all = tuple(families)

    def for_path(self, path: str) -> ApiFamily | None:
        best = max(self.all, key=lambda f: f.owns(path), default=None)
        return best if best is not None and best.owns(path) else None

    def guarded(self, path: str) -> bool:
        family = self.for_path(path)
        return family is not None and family.guarded

    def prompt_pieces(self, path: str) -> PromptPieces | None:
        family = self.for_path(path)
        return None if family is None else family.prompt_pieces.get(path)


def spec_error_body(error: ApiError) -> dict[str, Any]:
    """The spec's own error JSON (the native API, and routes of no other shape)."""
    return error.body()


def spec_stream_error(path: str, error: ApiError) -> bytes:
    """The spec's last event of a stream that failed."""
    return sse.event({"token": "", "finished": True, "finish_reason": "error", **error.body()})
