"""The server describes itself (/openapi.json, /docs) and answers to the names the operator
gives it (--served-model-name)."""
from __future__ import annotations

import re

import httpx
import pytest

from llamaserve.config import ServerConfig
from llamaserve.generation_params import PARAMETERS


def test_openapi_describes_every_route(base_url, live_server):
    r = httpx.get(base_url + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    routes = {(re.sub(r":\w+}", "}", route.path), method.lower()) for route in live_server.app.routes
              for method in getattr(route, "methods", None) or () if method != "HEAD"}
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes - {("/openapi.json", "get"), ("/docs", "get"), ("/", "get")} <= described
    generate = doc["paths"]["/api/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # the request model's own ranges, not a copy
    assert generate["properties"]["temperature"]["maximum"] == 2.0
    assert set(generate["properties"]) >= {"prompt", "max_tokens", "temperature", "seed", "stop"}
    assert {n for n in generate["properties"] if n in PARAMETERS} <= set(PARAMETERS)


def test_openapi_is_a_valid_document(base_url):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis validates the document")
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    assert len([op for op in schema.get_all_operations() if op.ok()]) >= 10


def test_docs_page_needs_nothing_from_the_network(base_url):
    r = httpx.get(base_url + "/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # no CDN, no fonts


def test_served_model_name_answers_and_is_listed(serve_app, client_for):
    server = serve_app(ServerConfig(served_model_name=("gpt-4o-mini", "my-model"), default_max_tokens=2))
    client = client_for(server.url)
    [served, *_] = client.models.list().data  # one entry per model, every name an alias
    assert served.id == "gpt-4o-mini" and served.aliases[:2] == ["gpt-4o-mini", "my-model"]
    for name in ("gpt-4o-mini", "my-model"):
        reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=2, temperature=0)
        assert reply.model == "gpt-4o-mini"
    assert client.models.retrieve("my-model").id == "my-model"
    # One model served: a name it does not have is served by it too, under its first name.
    other = client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert other.model == "gpt-4o-mini"
    native = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Hi", "model": "my-model"}).json()
    assert native["model"] == "gpt-4o-mini"


def test_served_model_name_refuses_an_empty_name():
    with pytest.raises(ValueError, match="--served-model-name"):
        ServerConfig(served_model_name=("ok", " "))
