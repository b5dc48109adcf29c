"""Models over HTTP (real uvicorn, real httpx, real engines): every family's tiny GGUF loads
by its spec name and serves /api/v1/generate and /v1/chat/completions with its template;
several models at once, routed by the request's `model`; quantize on load (Q4_0, Q8_0) and
requantize refusal; bad names and a corrupt file; unload; the memory budget's LRU eviction;
idle unload and --auto-load; 202 with progress for a long load; and a load while another
model serves traffic."""
from __future__ import annotations

import math
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

import llamaserve
from llamaserve import _native
from llamaserve.server.chat import templates as chat
from llamaserve import models as m
from llamaserve.cli import main as cli_main
from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from llamaserve.server.ollama.keep_alive import keep_alive_seconds
from serverutil import LiveServer, sse_events, wait_for

SPEC_FAMILIES = {"llama-2-7b-chat": "llama", "qwen-7b-chat": "qwen", "gemma-2b": "gemma", "chatglm3-6b": "chatglm"}
N_CTX, N_PARALLEL = 128, 2


def make_folder(tiny_models, folder: Path) -> Path:
    folder.mkdir()
    for path in tiny_models.values():
        (folder / path.name).symlink_to(path)
    return folder


def serve(folder: Path, tmp: Path, loader=None, **options) -> LiveServer:
    options.setdefault("model", "llama-2-7b-chat")
    config = ServerConfig(models_dir=str(folder), quantize_cache=str(tmp / "cache"), n_ctx=N_CTX,
                          n_parallel=N_PARALLEL, n_threads=1, default_max_tokens=8, **options)
    return LiveServer(create_app(config, loader=loader)).start()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("models-server")


@pytest.fixture(scope="module")
def folder(tiny_models, workdir):
    """The tiny families under their file names, a corrupt GGUF, and a model whose only
    file is already quantized (gemma-7b, Q4_0)."""
    folder = make_folder(tiny_models, workdir / "models")
    (folder / "broken.gguf").write_bytes(tiny_models["gemma"].read_bytes()[:50_000])
    m.quantize(tiny_models["gemma"], "q4_0", folder / "gemma-7b.Q4_0.gguf")
    return folder


@pytest.fixture(scope="module")
def server(folder, workdir, tiny_models):
    config = workdir / "models.toml"
    config.write_text(f'[models.house]\nfile = "{tiny_models["gemma"]}"\nn_ctx = 64\nchat_template = "chatml"\n')
    with serve(folder, workdir, models_config=str(config)) as live:
        yield live


def api(server: LiveServer, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, server.url + path, timeout=120, **kw)


def listing(server: LiveServer) -> dict[str, dict]:
    return {row["name"]: row for row in api(server, "GET", "/api/v1/models").json()["models"]}


def load(server: LiveServer, name: str, **body) -> httpx.Response:
    return api(server, "POST", f"/api/v1/models/{name}/load", json=body or None)


def generate(server: LiveServer, model: str | None, **body) -> httpx.Response:
    payload = {"prompt": "Once upon a time", "max_tokens": 4, "ignore_eos": True, **body}
    if model is not None:
        payload["model"] = model
    return api(server, "POST", "/api/v1/generate", json=payload)


def expected_prompt_tokens(path: Path, messages: list[dict], override: str | None = None) -> int:
    """What the server's prompt must tokenize to, computed here with the same template code."""
    with llamaserve.Engine.load(path, n_ctx=64, n_parallel=1, n_threads=1) as eng:
        prompt = chat.template_for_engine(eng, override=override).render(messages)
        return len(eng.tokenize(prompt, add_special=True, parse_special=True))


# -- every family -------------------------------------------------------------------------

@pytest.mark.parametrize("spec_name", sorted(SPEC_FAMILIES))
def test_family_loads_generates_and_chats(server, tiny_models, spec_name):
    family = SPEC_FAMILIES[spec_name]
    r = load(server, spec_name.upper())  # names are case-insensitive
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["status"] in ("loaded", "already_loaded")
    assert info["architecture"] == family and info["quantization"] == "F16"
    assert info["format"] == "gguf" and info["loaded"] is True and info["device"] == "cpu"
    assert info["memory"]["weights"] == m.read_gguf_info(tiny_models[family]).weights_size
    assert info["memory"]["total"] > info["memory"]["weights"] and info["memory_usage"].endswith("GB")

    r = generate(server, spec_name)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 4 and r.json()["model"] == info["name"]

    messages = [{"role": "user", "content": "Say something"}]
    r = api(server, "POST", "/v1/chat/completions",
            json={"model": spec_name, "messages": messages, "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200, r.text
    # The prompt the server ran is exactly the family's template rendered and tokenized.
    assert r.json()["usage"]["prompt_tokens"] == expected_prompt_tokens(tiny_models[family], messages)


def test_several_models_at_once(server):
    for name in SPEC_FAMILIES:
        assert load(server, name).status_code == 200
    rows = listing(server)
    loaded = {row["name"] for row in rows.values() if row["loaded"]}
    assert {"llama-2-7b-chat.f16", "qwen-7b-chat.f16", "gemma-2b-it", "chatglm3-6b"} <= loaded
    for name, family in SPEC_FAMILIES.items():  # the request's model picks the engine
        r = generate(server, name)
        assert r.status_code == 200 and rows[r.json()["model"]]["architecture"] == family
    health = api(server, "GET", "/health").json()
    assert set(health["models"]) >= loaded
    qwen = next(row for row in rows.values() if row.get("architecture") == "qwen")
    assert qwen["aliases"] == ["qwen-7b-chat"] and qwen["size_bytes"] > 0
    per_token = m.read_gguf_info(_path_of(server, qwen)).kv_bytes_per_token()
    cells = -(-N_CTX // 256) * 256  # what llama.cpp allocates: slots padded to 256 cells
    assert qwen["memory"]["kv_cache"] == per_token * cells * N_PARALLEL


def _path_of(server: LiveServer, row: dict) -> Path:
    host = server.app.state.llamaserve.host
    return next(model.path for model in host.loaded.values() if model.name == row["name"])


def test_models_config_defaults_and_template_override(server, tiny_models):
    r = load(server, "house")
    assert r.status_code == 200, r.text
    assert r.json()["n_ctx"] == 64  # from the models config, not the server's 128
    messages = [{"role": "user", "content": "Hi"}]
    r = api(server, "POST", "/v1/chat/completions", json={"model": "house", "messages": messages, "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == expected_prompt_tokens(tiny_models["gemma"], messages, "chatml")


def test_default_model_smollm2(server, smollm2_path):
    """The embedded default model (SmolLM2-135M-Instruct: llama, ChatML template in its GGUF)
    is listed beside the folder's models, loads by its id, and chats with real text."""
    rows = listing(server)
    assert "default" in rows["llama-2-7b-chat.f16"]["aliases"]  # "default" is the server's --model
    name = smollm2_path.stem.lower()
    assert rows[name]["architecture"] == "llama" and rows[name]["loaded"] is False
    r = load(server, name)
    assert r.status_code == 200, r.text
    assert r.json()["architecture"] == "llama" and r.json()["quantization"] == "Q4_1"
    # "One word.": greedy decoding of the bare question loops (a 135M model; llama-server too)
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    r = api(server, "POST", "/v1/chat/completions",
            json={"model": r.json()["name"], "messages": messages, "max_tokens": 12, "temperature": 0})
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    assert r.json()["usage"]["prompt_tokens"] == expected_prompt_tokens(smollm2_path, messages)


# -- quantization -------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", ["q4_0", "q8_0"])
def test_quantize_on_load_and_serve(server, workdir, qtype):
    r = load(server, "llama-2-7b-chat", quantization=qtype)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["name"] == f"llama-2-7b-chat.{qtype}" and info["quantization"] == qtype.upper()
    assert info["status"] == "loaded"
    cached = sorted((workdir / "cache").glob(f"*.{qtype.upper()}.gguf"))
    assert len(cached) == 1
    r = generate(server, f"llama-2-7b-chat.{qtype}")
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    again = load(server, "llama-2-7b-chat", quantization=qtype.upper())
    assert again.json()["status"] == "already_loaded"
    row = listing(server)[f"llama-2-7b-chat.{qtype}"]
    assert row["loaded"] is True and row["quantization"] == qtype.upper()
    # Unloaded and loaded again: the cached file is reused, not quantized anew.
    mtime = cached[0].stat().st_mtime_ns
    assert api(server, "POST", f"/api/v1/models/llama-2-7b-chat.{qtype}/unload").json()["status"] == "unloaded"
    assert load(server, "llama-2-7b-chat", quantization=qtype).json()["status"] == "loaded"
    assert cached[0].stat().st_mtime_ns == mtime


def test_requantize_needs_permission(server):
    r = load(server, "gemma-7b", quantization="q8_0")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and "Q4_0" in error["message"]
    assert "allow_requantize" in error["details"]
    r = load(server, "gemma-7b", quantization="q8_0", allow_requantize=True)
    assert r.status_code == 200, r.text
    assert r.json()["quantization"] == "Q8_0"
    assert load(server, "gemma-7b", quantization="q4_0").json()["quantization"] == "Q4_0"  # its own file


def test_unknown_quantization_lists_the_valid_ones(server):
    r = load(server, "qwen-7b-chat", quantization="q7_z")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith("quantization")
    assert all(q in error["details"] for q in ("q4_0", "q8_0", "q4_k_m", "f16"))


# -- names and files ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "..\\..\\x", "~/.ssh/id_rsa", ".."])
def test_bad_names_in_requests(server, name):
    r = generate(server, name)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("model")
    r = api(server, "POST", "/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code in (400, 404)


@pytest.mark.parametrize("raw", ["%2E%2E%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "%2E%2E", "..%5C..%5Cx"])
def test_bad_names_in_load_paths(server, raw):
    r = httpx.post(server.url + f"/api/v1/models/{raw}/load", timeout=30)
    assert r.status_code in (400, 404) and "error" in r.json()
    assert not any(row.get("file") == "passwd" for row in listing(server).values())


def test_unknown_model(server):
    for r in (generate(server, "gemma-99b"), load(server, "gemma-99b"),
              api(server, "POST", "/api/v1/models/gemma-99b/unload")):
        assert r.status_code == 404 and r.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_corrupt_file_is_listed_and_refused(server):
    rows = listing(server)
    assert "truncated" in rows["broken"]["error"] and rows["broken"]["loaded"] is False
    assert rows["qwen-7b-chat.f16"].get("error") is None
    r = load(server, "broken")
    # The file's fault, known from its header: a 4xx (issue 11), no longer 500 MODEL_LOAD_FAILED.
    assert r.status_code == 422 and r.json()["error"]["code"] == "MODEL_FILE_INVALID"
    assert "/" not in r.json()["error"]["details"]
    assert generate(server, "llama-2-7b-chat").status_code == 200  # still serving


def test_unload_then_model_not_loaded(server):
    assert load(server, "chatglm3-6b").status_code == 200
    r = api(server, "POST", "/api/v1/models/chatglm3-6b/unload")
    assert r.status_code == 200 and r.json() == {"name": "chatglm3-6b", "status": "unloaded", "loaded": False,
                                                 "active_requests": 0}
    r = generate(server, "chatglm3-6b")
    assert r.status_code == 409
    assert r.json()["error"] == {"code": "MODEL_NOT_LOADED", "message": "model: 'chatglm3-6b' is not loaded",
                                 "details": "Please call the load endpoint first"}
    assert api(server, "POST", "/api/v1/models/chatglm3-6b/unload").json()["status"] == "not_loaded"
    assert listing(server)["chatglm3-6b"]["loaded"] is False


def test_prefer_gpu(server):
    r = load(server, "qwen-7b-chat", prefer_gpu=True)
    assert r.status_code == 200, r.text
    if _native.supports_gpu_offload():
        assert r.json()["device"] == "gpu" and r.json()["n_gpu_layers"] == -1
    else:  # a CPU-only build loads on the CPU and says so
        assert r.json()["device"] == "cpu" and "no GPU backend" in r.json()["note"]


def test_load_while_another_model_serves(server):
    """Requests to one model keep succeeding while another is quantized and loaded."""
    results: list[int | str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                with client.stream("POST", server.url + "/api/v1/generate/stream",
                                   json={"prompt": "Go", "model": "llama-2-7b-chat", "max_tokens": 16,
                                         "ignore_eos": True}) as r:
                    if r.status_code != 200:  # kept, with why, for the assertion below
                        results.append(f"{r.status_code}: {r.read().decode()[:300]}")
                        continue
                    events = list(sse_events(r.iter_lines()))
                results.append(events[-1]["usage"]["completion_tokens"])

    assert load(server, "llama-2-7b-chat").status_code == 200
    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) >= 2, timeout=30)
        r = load(server, "qwen-7b-chat", quantization="q8_0")
        assert r.status_code == 200, r.text
        before = len(results)
        wait_for(lambda: len(results) >= before + 2, timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and all(n == 16 for n in results), results


# -- separate servers: 202, memory budget, idle unload, auto-load --------------------------

def test_slow_load_answers_202_with_progress(tiny_models, tmp_path):
    """A load outlasting --load-wait answers 202; the listing shows its phase and progress
    until it is done, and other models serve meanwhile. (The loader is the real one, held
    back until the test has looked, so the timing is the test's, not the machine's.)"""
    folder = make_folder(tiny_models, tmp_path / "models")
    gate = threading.Event()

    def held_loader(path, **options):
        if "qwen" in Path(path).name:
            gate.wait(60)
        return llamaserve.Engine.load(path, **options)

    with serve(folder, tmp_path, loader=held_loader, load_wait=0.2) as live:
        try:
            r = load(live, "qwen-7b-chat", quantization="q4_0")
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["status"] == "loading" and body["name"] == "qwen-7b-chat.q4_0"
            assert body["phase"] in ("quantizing", "loading") and 0 <= body["progress"] <= 1

            def row() -> dict:
                return listing(live).get("qwen-7b-chat.q4_0", {})

            wait_for(lambda: row().get("phase") == "loading", timeout=60, interval=0.05)  # quantized
            assert row()["status"] == "loading" and row()["loaded"] is False
            assert generate(live, "llama-2-7b-chat").status_code == 200  # served meanwhile
            r = generate(live, "qwen-7b-chat.q4_0")
            assert r.status_code == 503 and r.json()["error"]["code"] == "MODEL_LOADING"
            again = load(live, "qwen-7b-chat", quantization="q4_0")  # joins the same load
            assert again.status_code == 202 and again.json()["phase"] == "loading"
        finally:
            gate.set()
        wait_for(lambda: row().get("loaded") is True, timeout=60, interval=0.05)
        assert "status" not in row() or row()["status"] != "loading"
        assert generate(live, "qwen-7b-chat.q4_0").status_code == 200


def test_lru_eviction_under_max_memory(tiny_models, tmp_path):
    folder = make_folder(tiny_models, tmp_path / "models")
    cost = {f: m.estimate_memory(m.read_gguf_info(p), N_CTX, N_PARALLEL).total for f, p in tiny_models.items()}
    budget = cost["llama"] + cost["gemma"] + cost["chatglm"] // 2  # two small models fit, not three
    assert cost["qwen"] > budget
    with serve(folder, tmp_path, max_memory=str(budget)) as live:
        assert listing(live)["llama-2-7b-chat.f16"]["loaded"] is True
        assert load(live, "gemma-2b").status_code == 200
        assert generate(live, "llama-2-7b-chat").status_code == 200  # gemma is now the least recently used
        r = load(live, "chatglm3-6b")
        assert r.status_code == 200, r.text
        rows = listing(live)
        assert rows["gemma-2b-it"]["loaded"] is False
        assert rows["llama-2-7b-chat.f16"]["loaded"] is True and rows["chatglm3-6b"]["loaded"] is True
        r = load(live, "qwen-7b-chat")  # larger than the whole budget
        assert r.status_code == 503 and r.json()["error"]["code"] == "INSUFFICIENT_MEMORY"
        # A busy model is never evicted: with both residents in use, there is no room.
        host = live.app.state.llamaserve.host
        leases = [host.acquire(name) for name in ("llama-2-7b-chat", "chatglm3-6b")]  # as requests do
        try:
            r = load(live, "gemma-2b")
            assert r.status_code == 503 and r.json()["error"]["code"] == "INSUFFICIENT_MEMORY"
            assert int(r.headers["Retry-After"]) > 0
        finally:
            for lease in leases:
                host.release(lease)
        assert load(live, "gemma-2b").status_code == 200  # llama, released first, was the LRU
        assert {row["name"] for row in listing(live).values() if row["loaded"]} == {"gemma-2b-it", "chatglm3-6b"}


def test_idle_unload_and_auto_load(tiny_models, tmp_path):
    folder = make_folder(tiny_models, tmp_path / "models")
    with serve(folder, tmp_path, idle_unload=1.0, auto_load=True) as live:
        wait_for(lambda: listing(live)["llama-2-7b-chat.f16"]["loaded"] is False, timeout=20, interval=0.05)
        health = api(live, "GET", "/health")
        assert health.status_code == 200 and health.json()["status"] == "idle"
        # The native API keeps the spec's 409; the other APIs load on first use (--auto-load).
        assert generate(live, "gemma-2b").status_code == 409
        complete = {"prompt": "Once upon a time", "max_tokens": 2}
        r = api(live, "POST", "/v1/completions", json={"model": "default", **complete})  # none loaded:
        assert r.status_code == 200 and r.json()["model"] == "llama-2-7b-chat.f16"  # the configured one
        r = api(live, "POST", "/v1/completions", json={"model": "gemma-2b", **complete})
        assert r.status_code == 200 and r.json()["model"] == "gemma-2b-it"
        r = api(live, "POST", "/v1/chat/completions",
                json={"model": "chatglm3-6b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        assert r.status_code == 200, r.text
        wait_for(lambda: not any(row["loaded"] for row in listing(live).values()), timeout=20, interval=0.05)


def test_idle_unload_without_auto_load(tiny_models, tmp_path):
    folder = make_folder(tiny_models, tmp_path / "models")
    with serve(folder, tmp_path, idle_unload=1.0, auto_load=False) as live:
        wait_for(lambda: listing(live)["llama-2-7b-chat.f16"]["loaded"] is False, timeout=20, interval=0.05)
        r = generate(live, "llama-2-7b-chat")
        assert r.status_code == 409 and r.json()["error"]["code"] == "MODEL_NOT_LOADED"
        assert generate(live, None).json()["error"]["code"] == "MODEL_NOT_LOADED"
        assert load(live, "llama-2-7b-chat").status_code == 200
        assert generate(live, "llama-2-7b-chat").status_code == 200


def test_ollama_keep_alive_sets_how_long_a_model_stays(tiny_models, tmp_path):
    """Ollama's keep_alive, per request: a duration keeps the model that long after it (listed
    in /api/ps's expires_at), then it is unloaded; -1 keeps it for good; 0 unloads it at once."""
    folder = make_folder(tiny_models, tmp_path / "models")
    with serve(folder, tmp_path, auto_load=True) as live:  # no --idle-unload: only the client's
        ask = {"model": "llama-2-7b-chat", "prompt": "Hi", "raw": True, "stream": False, "options": {"num_predict": 2}}
        assert api(live, "POST", "/api/generate", json={**ask, "keep_alive": "1m"}).status_code == 200
        [running] = api(live, "GET", "/api/ps").json()["models"]
        expires = datetime.fromisoformat(running["expires_at"].replace("Z", "+00:00"))
        assert 50 < (expires - datetime.now(timezone.utc)).total_seconds() <= 60
        assert api(live, "POST", "/api/generate", json={**ask, "keep_alive": "500ms"}).status_code == 200
        wait_for(lambda: not api(live, "GET", "/api/ps").json()["models"], timeout=20, interval=0.05)
        assert api(live, "POST", "/api/generate", json={**ask, "keep_alive": -1}).status_code == 200  # loads again
        [running] = api(live, "GET", "/api/ps").json()["models"]
        assert running["expires_at"].startswith("0001")  # never
        r = api(live, "POST", "/api/generate", json={**ask, "keep_alive": "soon"})
        assert r.status_code == 400 and "keep_alive" in r.json()["error"]
        unload = api(live, "POST", "/api/generate", json={"model": "llama-2-7b-chat", "keep_alive": 0})
        assert unload.json()["done_reason"] == "unload" and not api(live, "GET", "/api/ps").json()["models"]


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("0", 0.0), (10, 10.0), ("-1", math.inf), (-1, math.inf),
    ("2.5s", 2.5)])
def test_keep_alive_durations(value, seconds):
    assert keep_alive_seconds(value) == pytest.approx(seconds)


# -- command line -------------------------------------------------------------------------

def test_cli_models_and_quantize(tiny_models, tmp_path, capsys):
    folder = make_folder(tiny_models, tmp_path / "models")
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    assert cli_main(["models", "--models-dir", str(folder), "--no-default"]) == 0
    out = capsys.readouterr().out
    assert "qwen-7b-chat.f16" in out and "ERROR" in out and "gemma-2b" in out
    source = folder / "llama-2-7b-chat.F16.gguf"
    shutil.copy(tiny_models["llama"], tmp_path / "src.F16.gguf")
    assert cli_main(["quantize", str(tmp_path / "src.F16.gguf"), "q4_0"]) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err and (tmp_path / "src.Q4_0.gguf").is_file()
    assert m.read_gguf_info(tmp_path / "src.Q4_0.gguf").quantization == "Q4_0"
    assert cli_main(["quantize", str(tmp_path / "src.Q4_0.gguf"), "q8_0"]) == 2
    assert "allow-requantize" in capsys.readouterr().err
    assert cli_main(["quantize", str(source), "q9"]) == 2
    assert "valid types" in capsys.readouterr().err
    assert cli_main(["quantize", "gemma-2b", "q8_0", "--models-dir", str(folder), "-o", str(tmp_path / "g.gguf")]) == 0
    assert m.read_gguf_info(tmp_path / "g.gguf").quantization == "Q8_0"


def test_asleep_as_llama_server_says_it_and_wakes_on_use(tiny_models, tmp_path):
    """llama-server's --sleep-idle-seconds is --idle-unload here: /props answers without waking
    the model (is_sleeping), /v1/models still lists the server's model, /tokenize wakes it."""
    folder = make_folder(tiny_models, tmp_path / "models")
    with serve(folder, tmp_path, idle_unload=1.0, served_model_name=("house",)) as live:
        # Asked first while asleep: described when it was loaded, so not woken to answer.
        wait_for(lambda: api(live, "GET", "/health").json()["status"] == "idle", timeout=20, interval=0.05)
        asleep = api(live, "GET", "/props").json()
        assert asleep["is_sleeping"] is True and asleep["model_alias"] == "house"
        assert api(live, "GET", "/health").json()["status"] == "idle"  # /props did not wake it
        ids = [m["id"] for m in api(live, "GET", "/v1/models").json()["data"]]
        assert ids[0] == "house" and "llama-2-7b-chat.F16" not in ids  # its file is not listed a second time
        assert api(live, "POST", "/tokenize", json={"content": "Hello"}).json()["tokens"]
        assert api(live, "GET", "/props").json()["is_sleeping"] is False
        assert api(live, "POST", "/completion", json={"prompt": "Hi", "n_predict": 4}).status_code == 200
        wait_for(lambda: api(live, "GET", "/props").json()["is_sleeping"], timeout=20, interval=0.05)
        # Asleep, /metrics still has the llamacpp: series: the last figures, the throughput of
        # the last generation once, then an empty window.
        def metric(name: str) -> float:
            text = api(live, "GET", "/metrics").text
            return float(next(line for line in text.splitlines() if line.startswith(f"llamacpp:{name} ")).split()[1])
        assert metric("predicted_tokens_seconds") > 0 and metric("predicted_tokens_seconds") == 0.0
        assert metric("tokens_predicted_total") >= 4
        assert api(live, "GET", "/health").json()["status"] == "idle"  # scraping did not wake it
        assert api(live, "POST", "/tokenize", json={"content": "Hello"}).json()["tokens"]
        assert api(live, "GET", "/props").json()["is_sleeping"] is False
