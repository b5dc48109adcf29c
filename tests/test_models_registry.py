"""The model registry (llamaserve.models): GGUF headers read without loading weights, names
and aliases, the models config, bad names and bad files, quantization into the cache, and
memory estimates; checked against what llama.cpp itself reports where it reports it."""
from __future__ import annotations

import os
import shutil

import pytest

import llamaserve
from llamaserve import models as m
from tiny_models import FAMILIES, n_params, write_tiny_model


@pytest.fixture()
def folder(tiny_models, tmp_path):
    """A models folder holding (links to) every tiny family, a truncated GGUF and a text file
    named .gguf; its own quantize cache."""
    models = tmp_path / "models"
    models.mkdir()
    for path in tiny_models.values():
        (models / path.name).symlink_to(path)
    data = tiny_models["gemma"].read_bytes()
    (models / "truncated.gguf").write_bytes(data[: len(data) // 2])
    (models / "notes.gguf").write_text("not a model")
    (models / "README.txt").write_text("ignored")
    return models


def registry(folder, **kw) -> m.ModelRegistry:
    kw.setdefault("include_default", False)
    return m.ModelRegistry(folder, cache_dir=folder.parent / "cache", **kw)


# -- headers ------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_header_facts_match_the_engine(tiny_models, family):
    info = m.read_gguf_info(tiny_models[family])
    fam = FAMILIES[family]
    assert info.architecture == fam.arch
    assert info.quantization == "F16"
    assert info.context_length == fam.n_ctx_train
    assert info.n_params == n_params(fam)
    assert (info.chat_template is not None) == (fam.chat_template is not None)
    with llamaserve.Engine.load(tiny_models[family], n_ctx=64, n_parallel=1, n_threads=1) as eng:
        meta = eng.metadata
        assert meta["architecture"] == info.architecture
        assert meta["n_params"] == info.n_params  # llama.cpp counts the same parameters
        assert meta["weights_size"] == info.weights_size
        assert meta["n_vocab"] == info.n_vocab
        assert meta["n_ctx_train"] == info.context_length


def test_default_model_header(model_path):
    info = m.read_gguf_info(model_path)
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.n_vocab == 262144
    assert 250e6 < info.n_params < 300e6  # Gemma 3 270M


@pytest.mark.parametrize("damage, error", [
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: b[:100], "truncated"),
    (lambda b: b"GGUF" + b"\xff" * 20, "unsupported GGUF version"),
    (lambda b: b"PK\x03\x04" + b[4:], "not a GGUF file"),
    (lambda b: b"", "not a GGUF file"),
])
def test_broken_files_raise_a_format_error(tiny_models, tmp_path, damage, error):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage(tiny_models["llama"].read_bytes()))
    with pytest.raises(m.GGUFFormatError, match=error):
        m.read_gguf_info(bad)


# -- listing and names --------------------------------------------------------------------

def test_listing_survives_broken_files(folder):
    listed = {e["name"]: e for e in registry(folder).listing()}
    assert set(listed) == {"llama-2-7b-chat.f16", "qwen-7b-chat.f16", "gemma-2b-it", "chatglm3-6b",
                           "truncated", "notes"}
    assert "truncated" in listed["truncated"]["error"]
    assert "not a GGUF" in listed["notes"]["error"]
    ok = listed["qwen-7b-chat.f16"]
    assert ok["format"] == "gguf" and "error" not in ok
    assert ok["architecture"] == "qwen" and ok["quantization"] == "F16" and ok["chat_template"] is True
    assert ok["size_bytes"] == (folder / "qwen-7b-chat.F16.gguf").stat().st_size
    assert listed["chatglm3-6b"]["chat_template"] is False


@pytest.mark.parametrize("name, family", [
    ("qwen-7b-chat", "qwen"), ("QWEN-7B-Chat", "qwen"), ("gemma-2b", "gemma"), ("Gemma-2B", "gemma"),
    ("llama-2-7b-chat", "llama"), ("chatglm3-6b", "chatglm"), ("ChatGLM3-6B", "chatglm"),
    ("llama-2-7b-chat.F16", "llama"), ("llama_2_7b_chat", "llama"), ("gemma-2b-it", "gemma"),
])
def test_spec_names_and_conventions_resolve(folder, tiny_models, name, family):
    assert registry(folder).resolve(name).path.name == tiny_models[family].name


def test_spec_aliases_follow_file_name_conventions(tmp_path, tiny_models):
    """Each spec name finds the file a self-hoster would download under that name."""
    folder = tmp_path / "conventions"
    folder.mkdir()
    files = {"qwen-14b-chat": "Qwen-14B-Chat.Q4_K_M.gguf", "gemma-7b": "gemma-7b-it.Q8_0.gguf",
             "llama-2-7b-chat": "llama-2-7b-chat.Q4_0.gguf", "chatglm3-6b": "chatglm3-6b-q4_0.gguf",
             "qwen-7b-chat": "qwen7b-chat-q5_k_m.gguf", "gemma-2b": "gemma-2b.gguf"}
    for target in files.values():
        (folder / target).symlink_to(tiny_models["llama"])
    reg = registry(folder)
    for alias, file in files.items():
        assert reg.resolve(alias).path.name == file
        assert reg.resolve(alias.upper()).path.name == file
    listed = {e["name"]: e["aliases"] for e in reg.listing()}
    assert listed["qwen-14b-chat.q4_k_m"] == ["qwen-14b-chat"]


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "..", "a/b", "a\\b", ".hidden",
                                  "~root", "C:model", "x" * 300, "", "bad\x00name"])
def test_names_never_escape_the_folder(folder, name):
    with pytest.raises(m.InvalidModelName):
        registry(folder).resolve(name)


def test_paths_only_with_the_flag(folder, tiny_models):
    path = str(tiny_models["llama"])
    with pytest.raises(m.InvalidModelName):
        registry(folder).resolve(path)
    entry = registry(folder, allow_paths=True).resolve(path)
    assert entry.path.name == tiny_models["llama"].name and entry.ok
    with pytest.raises(m.ModelNotFound):
        registry(folder, allow_paths=True).resolve("/no/such/file.gguf")


def test_unknown_model(folder):
    with pytest.raises(m.ModelNotFound) as err:
        registry(folder).resolve("gemma-7b")  # a spec name with no file here
    assert err.value.status == 404


def test_default_model_is_listed(folder, smollm2_path):
    reg = m.ModelRegistry(folder, cache_dir=folder.parent / "cache")
    entry = reg.resolve("default")
    assert entry.is_default and entry.path == smollm2_path
    assert entry.quantization == "Q4_1"
    assert "default" in {a for e in reg.listing() for a in e["aliases"]}


def test_rescan_sees_new_and_changed_files(folder, tiny_models):
    reg = registry(folder)
    assert "gemma" not in {e.id for e in reg.scan()}
    shutil.copy(tiny_models["gemma"], folder / "gemma.gguf")
    assert reg.resolve("gemma").quantization == "F16"
    (folder / "gemma.gguf").write_bytes(b"GGUF")
    assert reg.resolve("gemma").error is not None


# -- config -------------------------------------------------------------------------------

def test_models_config(folder, tmp_path):
    config = tmp_path / "models.toml"
    config.write_text(f"""
models_dir = "{folder}"
[defaults]
n_ctx = 1024
[models."My-Llama"]
file = "llama-2-7b-chat.F16.gguf"
n_parallel = 2
chat_template = "chatml"
aliases = ["house-model"]
[models.elsewhere]
file = "{folder / 'qwen-7b-chat.F16.gguf'}"
""")
    reg = m.ModelRegistry(config_file=config, include_default=False, cache_dir=tmp_path / "cache")
    assert reg.models_dir == folder
    mine = reg.resolve("my-llama")
    assert reg.resolve("HOUSE-MODEL").id == "my-llama"
    assert mine.path.name == "llama-2-7b-chat.F16.gguf" and mine.id == "my-llama"
    assert reg.settings_for(mine) == m.ModelSettings(n_ctx=1024, n_parallel=2, chat_template="chatml")
    assert reg.resolve("elsewhere").info.architecture == "qwen"
    ids = [e.id for e in reg.scan()]
    assert ids.count("my-llama") == 1 and "llama-2-7b-chat.f16" not in ids  # one entry per file
    assert reg.resolve("llama-2-7b-chat").id == "my-llama"  # the spec name finds the configured file


@pytest.mark.parametrize("text, error", [
    ("[models.x]\nn_ctx = 5", "file: required"),
    ("[models.x]\nfile = 'a.gguf'\nn_ctx = -1", "positive integer"),
    ("[models.x]\nfile = 'a.gguf'\ncolour = 'red'", "unknown key"),
    ("[models.'../x']\nfile = 'a.gguf'", "is a path"),
    ("nonsense = 1", "unknown key"),
    ("[models", "models config"),
])
def test_bad_models_config(tmp_path, text, error):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(m.ModelsConfigError, match=error):
        m.ModelRegistry(config_file=config, include_default=False)


def test_config_file_missing_is_reported(tmp_path):
    with pytest.raises(m.ModelsConfigError, match="models config"):
        m.ModelRegistry(config_file=tmp_path / "absent.toml")


# -- quantization -------------------------------------------------------------------------

def test_quantize_into_the_cache_and_reuse(folder):
    reg = registry(folder)
    source = reg.resolve("llama-2-7b-chat")
    seen: list[float] = []
    q4 = reg.quantize(source, "q4_0", progress=seen.append)
    assert q4.quantization == "Q4_0" and q4.path.parent == reg.cache_dir
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert q4.info.n_params == source.info.n_params
    assert q4.info.weights_size < source.info.weights_size
    mtime = os.stat(q4.path).st_mtime_ns
    again = reg.quantize(source, "Q4_0")  # reused, not redone
    assert again.path == q4.path and os.stat(q4.path).st_mtime_ns == mtime
    q8 = reg.quantize(source, "Q8_0")
    assert q8.quantization == "Q8_0" and q8.path != q4.path
    assert not [p for p in reg.cache_dir.iterdir() if p.name.endswith(".partial")]


def test_quantization_prefers_an_existing_variant(folder):
    reg = registry(folder)
    src = reg.resolve("llama-2-7b-chat")
    q4 = reg.quantize(src, "q4_0")
    shutil.copy(q4.path, folder / "llama-2-7b-chat.Q4_0.gguf")
    reg.scan()
    target, todo = reg.for_quantization(reg.resolve("llama-2-7b-chat"), "q4_0")
    assert todo is None and target.path == folder / "llama-2-7b-chat.Q4_0.gguf"
    # A bare name now prefers the quantized variant; the F16 stays reachable by its id.
    assert reg.resolve("llama-2-7b-chat").quantization == "Q4_0"
    assert reg.resolve("llama-2-7b-chat.f16").quantization == "F16"
    # Q8_0 is made from the most precise variant (the F16), not from the Q4_0.
    source, qtype = reg.for_quantization(reg.resolve("llama-2-7b-chat"), "q8_0")
    assert qtype == "Q8_0" and source.quantization == "F16"


def test_requantize_refused_unless_allowed(folder):
    reg = registry(folder)
    q4 = reg.quantize(reg.resolve("gemma-2b"), "q4_0")
    alone = folder.parent / "alone"
    alone.mkdir()
    shutil.copy(q4.path, alone / "gemma-2b.Q4_0.gguf")
    reg2 = m.ModelRegistry(alone, cache_dir=folder.parent / "cache", include_default=False)
    entry = reg2.resolve("gemma-2b")
    with pytest.raises(m.RequantizeRefused) as err:
        reg2.quantize(entry, "q8_0")
    assert "Q4_0" in err.value.message and "allow_requantize" in err.value.details
    with pytest.raises(m.RequantizeRefused):
        m.quantize(entry.path, "q2_k", alone / "out.gguf")
    assert not (alone / "out.gguf").exists()
    q8 = reg2.quantize(entry, "q8_0", allow_requantize=True)
    assert q8.quantization == "Q8_0"


@pytest.mark.parametrize("name", ["q9_0", "Q4", "fp8", "", "q4_0; rm -rf /"])
def test_unknown_quantization_lists_the_valid_names(folder, name):
    reg = registry(folder)
    with pytest.raises(m.UnknownQuantization) as err:
        reg.quantize(reg.resolve("gemma-2b"), name)
    assert err.value.status == 400
    for valid in ("q4_0", "q8_0", "q4_k_m", "f16"):
        assert valid in err.value.details


def test_quantize_a_broken_source_fails_cleanly(folder, tmp_path):
    with pytest.raises(m.ModelFileError):
        m.quantize(folder / "truncated.gguf", "q8_0", tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*x.gguf*"))


def test_quant_name():
    assert m.quant_name("q4_k_m") == "Q4_K_M"
    assert m.quant_name(" q8-0 ") == "Q8_0"
    assert m.split_quant_suffix("llama-2-7b-chat.Q4_K_M") == ("llama-2-7b-chat", "Q4_K_M")
    assert m.split_quant_suffix("qwen-7b-chat-q5_1") == ("qwen-7b-chat", "Q5_1")
    assert m.split_quant_suffix("gemma-2b-it") == ("gemma-2b-it", None)
    assert m.split_quant_suffix("phi-3-mini-fp16") == ("phi-3-mini", "FP16")


# -- memory -------------------------------------------------------------------------------

def test_kv_estimate_matches_the_model_shapes(tiny_models):
    for key, path in tiny_models.items():
        fam = FAMILIES[key]
        info = m.read_gguf_info(path)
        head = fam.head_dim or fam.n_embd // fam.n_head
        per_token = fam.n_layer * 2 * fam.n_head_kv * head * 2  # K and V, F16
        assert info.kv_bytes_per_token() == per_token
        est = m.estimate_memory(info, n_ctx=256, n_parallel=3)
        assert est.kv_cache == per_token * 256 * 3
        assert est.weights == info.weights_size
        assert est.compute > 4 * 3 * info.n_vocab  # one row of logits per slot, and activations
        assert est.total == est.weights + est.kv_cache + est.compute


def test_default_model_estimate_matches_what_llama_cpp_allocates(model_path, engine):
    """The shared engine is Gemma 3 270M at 512 x 8: the estimate made from the file alone
    must agree with the buffers llama.cpp reports for it."""
    assert (engine.n_ctx, engine.n_parallel) == (512, 8)
    est = m.estimate_memory(m.read_gguf_info(model_path), n_ctx=512, n_parallel=8)
    kv = sum(b["context"] for b in engine.memory_use)
    compute = sum(b["compute"] for b in engine.memory_use)
    assert est.kv_cache == kv == 72 * 2**20
    assert compute * 0.8 < est.compute < compute * 2


def test_lru_budget():
    a, b, c = (m.Resident(k, 100, last_used=t) for k, t in (("a", 1.0), ("b", 2.0), ("c", 3.0)))
    budget = m.LruBudget(350)
    assert budget.victims([a, b, c], 50) == []
    assert [r.key for r in budget.victims([a, b, c], 100)] == ["a"]
    assert [r.key for r in budget.victims([a, b, c], 250)] == ["a", "b"]
    a.active = 1  # busy models are never evicted
    assert [r.key for r in budget.victims([a, b, c], 250)] == ["b", "c"]
    assert budget.victims([a, b, c], 300) is None
    assert m.LruBudget(None).victims([a, b, c], 10**12) == []


@pytest.mark.parametrize("text, value", [("8GB", 8 * 2**30), ("512MiB", 512 * 2**20), ("1.5g", 3 * 2**29),
                                         ("1000", 1000), ("64k", 65536), (2048, 2048)])
def test_parse_size(text, value):
    assert m.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "1XB"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        m.parse_size(text)


def test_f32_tiny_model(tmp_path):
    path = write_tiny_model(tmp_path / "tiny-f32.gguf", "llama", f32=True)
    assert m.read_gguf_info(path).quantization == "F32"
