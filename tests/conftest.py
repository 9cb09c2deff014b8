"""Shared fixtures: the real data folder and the real tiny GGUF model (SmolLM2-135M via llama.cpp)."""

from __future__ import annotations

import os

import pytest

from mcqa.config import LLMConfig, data_dir


def pytest_collection_modifyitems(config, items):
    if os.environ.get("MCQA_SLOW"):
        return
    skip = pytest.mark.skip(reason="loads the default 1.5B model: run `make test-slow` (MCQA_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root():
    root = data_dir()
    if not (root / "eedi").is_dir():
        pytest.fail(f"shared data not found at {root}: set MCQA_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def tiny_llm():
    """The real SmolLM2-135M GGUF through llama.cpp: near-random on MCQ, but every code path is real."""
    from mcqa.llm import load_llm

    llm = load_llm(LLMConfig(model="smollm2-135m", n_ctx=2048, n_threads=2))
    yield llm
    llm.close()
