"""Schemathesis against the live server's own GET /openapi.json: for every operation, cases
that the description says are valid and cases it says are not. Whatever they send, the answer
is never a 5xx other than 503, every error is in the shape of the API its path belongs to,
nothing inside a stream or a batch is an internal error, and the server is healthy after.

Bounded for the suite: a fixed number of cases per operation and mode, derandomized (the same
cases on every run), no example database, few tokens per case. The server is one of its own
over the shared engine, with a models folder of tiny models so that fuzzed loads are cheap;
the fuzzer never loads, quantizes or unloads the shared engine's model."""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from llamaserve.config import ServerConfig
from llamaserve.server.families import FAMILIES
from llamaserve.generation_params import INT32_MAX
from llamaserve.models import RegistryError
from llamaserve.server.app import create_app
from serverutil import LiveServer, wait_for

CASES = 30  # per operation and generation mode
MAX_TOKENS = 2  # a case's tokens at most: the 512-token context would bound them, slowly
TINY = ("llama", "qwen")  # the tiny families in the fuzz server's models folder


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation the app describes (read at collection time
    from an app that is never started; the cases go to a live one): valid cases, and invalid
    ones where the operation takes a body or parameters to make invalid."""
    document = TestClient(create_app(ServerConfig())).get("/openapi.json").json()
    return [(method.upper(), path, mode) for path, ops in document["paths"].items() for method, op in ops.items()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode is GenerationMode.POSITIVE or "requestBody" in op or op.get("parameters")]


RUNS = _cases()
counts: Counter[tuple[str, str]] = Counter()
statuses: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture(scope="module")
def fuzz_server(engine, model_path, tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-models")
    for family in TINY:
        (folder / tiny_models[family].name).symlink_to(tiny_models[family])
    config = ServerConfig(model=str(model_path), models_dir=str(folder), default_max_tokens=MAX_TOKENS,
                          quantize_cache=str(tmp_path_factory.mktemp("fuzz-quantized")),
                          max_batch_size=4, n_ctx=256, n_parallel=2)
    with LiveServer(create_app(config, engine)) as server:
        yield server


@pytest.fixture(scope="module")
def schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def touches_shared_model(server: LiveServer, name: str) -> bool:
    """Would a load or unload of `name` reach the shared engine's model (which other tests use)?"""
    host = server.app.state.llamaserve.host
    shared = next(m for m in host.loaded.values() if not m.owned)  # handed in, never closed
    try:
        entry = host.entry_for_load(name)
    except RegistryError:
        return shared.answers_to(name)
    return entry.path.absolute() == shared.path.absolute() or shared.answers_to(name)


def _whole(value: Any) -> Any:
    """2.0 -> 2 throughout: JSON Schema counts 2.0 as an integer and schemathesis sends it so,
    but the request model refuses a float where an integer belongs, as OpenAI's API does."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def _cheap(body: Any) -> None:
    """Make a valid case cheap to run, in place: its max_tokens (whatever the API calls it)
    at most MAX_TOKENS, at most 2 choices and 2 prompts. Invalid values stay, to be refused."""
    if not isinstance(body, dict):
        return
    for key, most in (("max_tokens", MAX_TOKENS), ("max_completion_tokens", MAX_TOKENS),
                      ("max_output_tokens", MAX_TOKENS), ("num_predict", MAX_TOKENS), ("n", 2), ("best_of", 2)):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and most < value <= INT32_MAX:
            body[key] = value % most + 1
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        body["prompt"] = prompt[:2]
    _cheap(body.get("options"))  # Ollama's num_predict
    body.pop("keep_alive", None)  # Ollama's keep_alive 0 would unload the shared model other tests use
    if isinstance(body.get("requests"), list):
        for item in body["requests"]:
            _cheap(item)


def _without_context_figures(error: dict[str, Any]) -> set[str]:
    """An error's keys, less the prompt's and context's sizes llama-server adds to a context overflow."""
    figures = {"n_prompt_tokens", "n_ctx"}
    if error.get("type") == "exceed_context_size_error":
        assert figures <= set(error), error
        return set(error) - figures
    return set(error)


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} on the wire")

    return json.loads(text, parse_constant=refuse)


def _error_shape(path: str, body: Any) -> None:
    """The error JSON of the API family `path` belongs to."""
    family = FAMILIES.for_path(path)
    name = family.name if family is not None else "native"
    if name == "anthropic":
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str)
    elif name == "ollama":
        assert set(body) == {"error"} and isinstance(body["error"], str), body
    elif name == "llamacpp":
        error = body["error"]
        assert _without_context_figures(error) == {"code", "message", "type"} and isinstance(error["code"], int), body
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
    elif name == "openai":
        error = body["error"]
        assert _without_context_figures(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)
        assert error["code"] is None or isinstance(error["code"], str)
    else:  # the spec's
        error = body["error"]
        assert set(error) == {"code", "message", "details"}, body
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


def _internal_errors(value: Any) -> list[Any]:
    """Error objects of an unexpected failure anywhere inside a body (a stream's error event,
    a batch item): the native INTERNAL_ERROR, as OpenAI's shape renders it (server_error
    without a code), and Anthropic's api_error (any 5xx but 503)."""
    found = []
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict) and (error.get("code") == "INTERNAL_ERROR" or error.get("type") == "api_error"
                                        or (error.get("type"), error.get("code")) == ("server_error", None)):
            found.append(error)
        for item in value.values():
            found += _internal_errors(item)
    elif isinstance(value, list):
        for item in value:
            found += _internal_errors(item)
    return found


def check_response(case: Any, response: schemathesis.Response) -> None:
    path, status = case.operation.path, response.status_code
    where = f"{case.operation.label} with {case.body if case.body is not None else case.path_parameters!r:.300}"
    assert status < 500 or status == 503, f"{status} from {where}: {response.text[:500]}"
    kind = (response.headers.get("content-type") or [""])[0]  # schemathesis: name -> values
    if kind.startswith("text/event-stream"):
        events = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        bodies = [_strict_json(e) for e in events if e != "[DONE]"]
    elif kind.startswith("application/json"):
        bodies = [_strict_json(response.text)]
    else:
        assert status < 400, f"{status} without JSON from {where}: {response.text[:200]}"
        return
    if status >= 400:
        _error_shape(path, bodies[0])
    for body in bodies:
        assert not _internal_errors(body), f"internal error inside the answer to {where}: {body}"


def _strategy(operation: Any, mode: GenerationMode, server: LiveServer, guarded: bool) -> Any:
    """The operation's cases; a model name in the path is also drawn from the models the fuzz
    server has (but the shared one where `guarded`), so that loads, unloads and lookups hit
    real models too."""
    strategy = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if names and mode is GenerationMode.POSITIVE:
        host = server.app.state.llamaserve.host
        known = sorted({e.id for e in host.registry.entries()} | set(host.loaded))
        known = [n for n in known if not (guarded and touches_shared_model(server, n))]
        strategy = st.one_of(strategy, *(operation.as_strategy(generation_mode=mode, path_parameters={names[0]: n})
                                         for n in known))
    return strategy


def _has_inputs(operation: Any) -> bool:
    return bool(list(operation.body) or list(operation.path_parameters) or list(operation.query))


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p}-{g.value}" for m, p, g in RUNS])
def test_operation(schema, fuzz_server, session, method, path, mode):
    operation = schema[path][method]
    guarded = bool({"load", "unload"} & set(path.split("/")))

    @settings(max_examples=CASES if _has_inputs(operation) else 1, deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                    HealthCheck.data_too_large])
    @given(case=_strategy(operation, mode, fuzz_server, guarded))
    def run(case):
        if guarded:
            name = case.path_parameters.get("model_name")
            assume(not (isinstance(name, str) and touches_shared_model(fuzz_server, name)))
        if mode is GenerationMode.POSITIVE and isinstance(case.body, (dict, list)):
            case.body = _whole(case.body)
        _cheap(case.body)
        response = case.call(base_url=fuzz_server.url, session=session, timeout=60)
        counts[(operation.label, mode.value)] += 1
        statuses[(operation.label, mode.value, response.status_code)] += 1
        check_response(case, response)

    run()


def test_the_server_is_healthy_after_fuzzing(fuzz_server, engine):
    health = requests.get(fuzz_server.url + "/health", timeout=30)
    assert health.status_code == 200, health.text
    wait_for(lambda: engine.busy_slots == 0, timeout=30)
    done = requests.post(fuzz_server.url + "/api/v1/generate", json={"prompt": "Hello", "max_tokens": 2}, timeout=60)
    assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] >= 1
    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases over {len({op for op, _ in counts})} operations")
    for (label, mode), n in sorted(counts.items()):
        answers = ", ".join(f"{s}: {c}" for (op, m, s), c in sorted(statuses.items()) if (op, m) == (label, mode))
        print(f"  {label} [{mode}] {n}  ({answers})")
