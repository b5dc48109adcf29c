"""Shared fixtures: the real default model (Gemma 3 270M), loaded once per session."""
from __future__ import annotations

import pytest

import llamaserve


@pytest.fixture(scope="session")
def model_path():
    return llamaserve.default_model_path()


@pytest.fixture(scope="session")
def engine(model_path):
    """Eight slots, a short context: the shared engine for tests that do not reshape it."""
    eng = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=8)
    yield eng
    eng.close()
