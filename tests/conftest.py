"""Shared fixtures: real models, loaded once per session. Each fixture names its model:

- `model_path` / `engine` / `live_server`: Gemma 3 270M (Q4_K_M). The engine and server
  tests' assertions (token ids, its 262k-token vocabulary that the sampler's fast path was
  tuned on, file names, text of greedy runs) were written against it.
- `smollm2_path`: the embedded default, SmolLM2-135M-Instruct, for tests of what a new user
  gets (a model that can chat; tests/test_default_model.py).
"""
from __future__ import annotations

import os

import pytest

import llamaserve
from llamaserve.default_model import gemma_model_path


@pytest.fixture(scope="session")
def model_path():
    """Gemma 3 270M: a base model with a large vocabulary, what the shared engine runs."""
    return gemma_model_path()


@pytest.fixture(scope="session")
def smollm2_path():
    """The default model (fetched at set-up by scripts/fetch_default_model.py; a clear
    DefaultModelMissing, not a skip, when set-up has not run)."""
    return llamaserve.default_model_path()


@pytest.fixture(scope="session")
def engine(model_path):
    """Gemma 3 270M, eight slots, a short context: the shared engine for tests that do not
    reshape it."""
    # scripts/gpu_check.sh runs the engine tests with every layer offloaded (a CUDA build)
    gpu_layers = int(os.environ.get("LLAMASERVE_TEST_GPU_LAYERS", "0"))
    eng = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=8, n_gpu_layers=gpu_layers)
    yield eng
    eng.close()


# -- the HTTP server (tests/test_server_*.py) ------------------------------------------

@pytest.fixture(scope="session")
def live_server(engine):
    """The app served by real uvicorn on a loopback port, over the shared engine."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    server = LiveServer(create_app(ServerConfig(max_batch_size=8, default_max_tokens=32), engine))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_url(live_server):
    return live_server.url


@pytest.fixture(scope="session")
def default_server(smollm2_path):
    """The default model (SmolLM2, the one agents hit first) served by real uvicorn: two
    slots of 4096 tokens (agent frameworks send long tool descriptions)."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    config = ServerConfig(model=str(smollm2_path), n_parallel=2, n_ctx=4096, default_max_tokens=64)
    with LiveServer(create_app(config)) as server:
        yield server


@pytest.fixture(scope="session")
def thinking_model(smollm2_path, tmp_path_factory):
    """The default weights with Qwen 3.5's chat template (thinking on by default: its generation
    prompt opens <think>), written as a GGUF copy."""
    from pathlib import Path

    from gguf_copy import with_chat_template

    template = (Path(__file__).parents[1] / "vendor/llama.cpp/models/templates/Qwen3.5-4B.jinja").read_text()
    return with_chat_template(smollm2_path, tmp_path_factory.mktemp("thinking") / "smollm2-thinking.gguf", template)


@pytest.fixture(scope="session")
def thinking_server(thinking_model):
    """The thinking model served with no reasoning budget of its own."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    config = ServerConfig(model=str(thinking_model), n_parallel=2, n_ctx=2048, default_max_tokens=48)
    with LiveServer(create_app(config)) as server:
        yield server


# -- the OpenAI-compatible /v1 (tests/test_openai_*.py) ----------------------------------------

@pytest.fixture(scope="session")
def served_model(engine):
    """The id /v1 serves the shared engine under (its file name)."""
    from pathlib import Path

    return Path(engine.metadata["path"]).stem


@pytest.fixture(scope="session")
def openai_client(base_url):
    """The official OpenAI SDK pointed at the live server (no retries: errors surface at once)."""
    import openai

    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


# -- tiny random-weight models of every family (tests/test_models_*.py) -----------------------

@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{family: path} of tiny GGUFs (llama, qwen, gemma, chatglm) written once per session
    under their conventional file names (tests/tiny_models.py). Copy them before changing."""
    from tiny_models import write_all

    return write_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def one_slot_url(model_path):
    """A server of its own with one slot and no queue: a second concurrent request is refused."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    config = ServerConfig(model=str(model_path), n_parallel=1, max_queue=0, n_ctx=2048)
    with LiveServer(create_app(config)) as server:
        yield server.url


@pytest.fixture
def serve_app(engine):
    """Start more servers in a test: serve_app(config, engine=<shared engine>, **create_app
    options) -> a started LiveServer; all are stopped when the test ends."""
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    servers = []

    def start(config, eng=engine, **options):
        server = LiveServer(create_app(config, eng, **options))
        servers.append(server)
        return server.start(ready=options.get("loader") is None)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client_for():
    """client_for(url, api_key) -> an OpenAI SDK client (no retries) for that server's /v1,
    closed when the test ends."""
    import openai

    clients = []

    def make(url, api_key="unused"):
        clients.append(openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
