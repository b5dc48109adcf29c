"""The OpenAPI 3.1 description of the server (GET /openapi.json), put together from what each
API family declares beside its routes; request schemas come from the request models
(llamaserve.generation_params and each family's protocol module)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import llamaserve
from llamaserve.server.field_notes import with_field_notes

NATIVE_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "details"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}
OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                          "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}
OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
LLAMACPP_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "type"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "type": {"type": "string"}}}}}
ERROR_SCHEMAS = {"NativeError": NATIVE_ERROR, "OpenAIError": OPENAI_ERROR, "AnthropicError": ANTHROPIC_ERROR,
                 "OllamaError": OLLAMA_ERROR, "LlamaCppError": LLAMACPP_ERROR}
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad request", 401: "Unauthorized", 403: "Needs an admin key",
            404: "Not found", 409: "Conflict", 413: "Body too large", 422: "Unusable model file",
            501: "Not supported",
            429: "Rate limited", 500: "Server error", 503: "Unavailable (loading, overloaded; see Retry-After)",
            502: "The fetched site failed (unreachable, or its answer too large)", 504: "Timed out",
            507: "Quantize cache full"}
# Every API route may answer these: bad input, auth, body limit, rate limit, a model loading.
COMMON_ERRORS = (400, 401, 413, 429, 503)


def json_body(schema: Mapping[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": with_field_notes(schema)}}}


def responses(ok: Mapping[int, Mapping[str, Any]], errors: tuple[int, ...] = COMMON_ERRORS, *,
              error_schema: str = "NativeError", event_stream: bool = False) -> dict[str, Any]:
    """`ok`: status -> JSON schema of the body; errors share the API family's error shape."""
    out: dict[str, Any] = {}
    for status, schema in ok.items():
        content: dict[str, Any] = {"application/json": {"schema": dict(schema)}}
        if event_stream:
            content["text/event-stream"] = {"schema": {"type": "string"}}
        out[str(status)] = {"description": _REASONS.get(status, "OK"), "content": content}
    for status in errors:
        out[str(status)] = {"description": _REASONS[status], "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{error_schema}"}}}}
    return out


def operation(summary: str, tag: str, answers: dict[str, Any], body: Mapping[str, Any] | None = None,
              parameters: list[dict[str, Any]] | None = None, body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": answers}
    if body is not None:
        op["requestBody"] = json_body(body, body_required)
    if parameters:
        op["parameters"] = parameters
    return op


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": 256}}


def document(*path_sets: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path_set in path_sets:
        for path, operations in path_set.items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {"title": "llamaserve", "version": llamaserve.__version__,
                 "description": "Native API under /api/v1, OpenAI-compatible API under /v1, "
                                "Anthropic-compatible API under /v1/messages."},
        "paths": paths,
        "components": {
            "schemas": ERROR_SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
