"""Bad input gives its typed error, and the engine keeps serving afterwards."""
from __future__ import annotations

import math
import os

import pytest

import llamaserve
from llamaserve import ContextLengthExceeded, EngineClosed, EngineError, InvalidRequest, ModelLoadError


def still_serves(engine):
    done = engine.generate("Hello", max_tokens=3, temperature=0, ignore_eos=True)
    assert done.usage.completion_tokens == 3


def test_prompt_longer_than_context(engine):
    long_prompt = "word " * (engine.n_ctx + 50)
    with pytest.raises(ContextLengthExceeded, match="context holds 512"):
        engine.generate(long_prompt, max_tokens=4)
    still_serves(engine)


def test_empty_prompt(engine):
    with pytest.raises(InvalidRequest, match="^prompt"):
        engine.generate("", max_tokens=4)
    with pytest.raises(InvalidRequest, match="^prompt"):
        engine.generate([], max_tokens=4)
    still_serves(engine)


@pytest.mark.parametrize("name, value", [
    ("temperature", math.nan),
    ("temperature", -0.5),
    ("temperature", math.inf),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("top_k", -1),
    ("min_p", 2.0),
    ("max_tokens", -5),
    ("max_tokens", 0),
    ("max_tokens", 2.5),
    ("presence_penalty", 3.0),
    ("seed", -1),
    ("seed", 2**40),
    ("stop", [""]),
    ("stop", 5),
    ("ignore_eos", "yes"),
    ("temperature", True),
    ("logit_bias", {"abc": 1.0}),
])
def test_bad_argument_names_the_parameter(engine, name, value):
    with pytest.raises(InvalidRequest, match=f"^{name}"):
        engine.generate("Hello", **{name: value})
    still_serves(engine)


def test_unknown_argument_and_token_ids(engine):
    with pytest.raises(InvalidRequest, match="^temprature"):
        engine.generate("Hello", temprature=0.5)
    with pytest.raises(InvalidRequest, match="unknown token id"):
        engine.generate([2, 10**9], max_tokens=2)
    with pytest.raises(InvalidRequest, match="unknown token id"):
        engine.generate("Hello", max_tokens=2, logit_bias={10**9: 5})
    with pytest.raises(InvalidRequest, match="grammar"):
        engine.generate("Hello", max_tokens=2, grammar="root ::= (")
    still_serves(engine)


def test_missing_model_file(tmp_path, engine):
    with pytest.raises(ModelLoadError, match="not found"):
        llamaserve.Engine.load(tmp_path / "nope.gguf")
    still_serves(engine)


def test_random_bytes_file(tmp_path, engine):
    bad = tmp_path / "random.gguf"
    bad.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(ModelLoadError, match="random.gguf"):
        llamaserve.Engine.load(bad)
    still_serves(engine)


def test_truncated_model_file(tmp_path, model_path, engine):
    truncated = tmp_path / "truncated.gguf"
    with open(model_path, "rb") as src:
        truncated.write_bytes(src.read(8 * 1024 * 1024))
    with pytest.raises(ModelLoadError, match="truncated.gguf"):
        llamaserve.Engine.load(truncated)
    still_serves(engine)


def test_bad_engine_options(model_path):
    with pytest.raises(InvalidRequest, match="^n_parallel"):
        llamaserve.Engine.load(model_path, n_parallel=0)
    with pytest.raises(InvalidRequest, match="^n_ctx"):
        llamaserve.Engine.load(model_path, n_ctx=-3)


def test_closed_engine_refuses_work(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=128, n_parallel=1)
    eng.close()
    with pytest.raises(EngineClosed, match="closed"):  # an EngineError, typed apart from a failure
        eng.generate("Hello", max_tokens=2)
    with pytest.raises(EngineClosed):
        eng.stream("Hello", max_tokens=2)
    eng.close()  # idempotent
