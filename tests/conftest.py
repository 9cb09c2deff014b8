"""Shared fixtures: the real data folder and the real tiny GGUF model (SmolLM2-135M via llama.cpp)."""

from __future__ import annotations

import csv
import os
import shutil
from itertools import islice

import pytest

import mcqa
from mcqa.config import LLMConfig, data_dir

mcqa.hub_offline()  # the suite, like the `mcqa` command, never waits on a model hub


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


def _forget_prompts(llm) -> None:
    """Make a llama.cpp model cold: drop its saved prompt states (the `PrefixStates` LRU) and its live
    KV cache, so nothing an earlier test evaluated can be reused."""
    if llm.states is not None:
        llm.states.saved.clear()
        llm.states.size = 0
    llm.llm.reset()


@pytest.fixture
def forget_prompts():
    """The function that makes a llama.cpp model cold (see `_forget_prompts`): tests that count cache
    reuse call it first, so their counts do not depend on which tests ran before."""
    return _forget_prompts


def write_map_folder(root, data_root, per_question=150, test_rows=0):
    """A MAP folder of `per_question` train rows of three questions, spread over the file (rows of a
    label come in runs), and with `test_rows`, a labelled test.csv of rows next to them."""
    with (data_root / "map" / "train.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    train, test = [], []
    for question in ["31772", "31774", "32835"]:
        of_question = [r for r in rows if r["QuestionId"] == question]
        step = len(of_question) // per_question
        train += of_question[::step][:per_question]
        test += of_question[1::step][:test_rows]
    folder = root / "map"
    folder.mkdir(parents=True)
    for name, chosen, columns in (
        ("train.csv", train, list(rows[0])),
        ("test.csv", test, list(rows[0]) if test_rows else list(rows[0])[:5]),
    ):
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(chosen)
    return root


@pytest.fixture(scope="session")
def small_eedi(tmp_path_factory, data_root):
    """A data folder with Eedi's catalogue and test file and the first 60 questions of its train file: the
    label store behind Eedi's votes encodes in seconds, where the shared train file's takes about a minute
    on a fresh cache (the misconception index is the same catalogue's, cached once for the whole suite)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "eedi"
    folder.mkdir()
    for name in ("misconception_mapping.csv", "test.csv"):
        shutil.copyfile(data_root / "eedi" / name, folder / name)
    with (data_root / "eedi" / "train.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(islice(reader, 60))
    with (folder / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def small_map(tmp_path_factory, data_root):
    """A data folder with a small MAP (150 train rows and 20 labelled test rows of each of three questions):
    a label store of it encodes in seconds, where the shared train file's takes minutes."""
    return write_map_folder(tmp_path_factory.mktemp("data"), data_root, test_rows=20)
