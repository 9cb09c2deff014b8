"""The numpy MiniLM encoder (mcqa.rag.numpy_encoder) against sentence-transformers, on real Eedi texts.

Parity: every component within 1e-4 and every cosine above 0.99999, for short texts, texts past the
model's 256-token limit, padded and odd ones; the same 25 nearest neighbours in a FAISS search. The
encoders' speeds on one thread are printed (`pytest -s`), never asserted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from mcqa.extras import MissingExtra, extras_for
from mcqa.models import resolve
from mcqa.rag import Embedder
from mcqa.rag.numpy_encoder import NumpyEncoder, UnsupportedModel, describe_folder, erf, read_safetensors, why_not

MINILM = resolve("minilm-l6", "embedder")


@pytest.fixture(scope="module")
def texts(data_root):
    """About 200 distinct real texts: Eedi questions, answers, constructs and misconception names, some
    joined past the 256-token limit, and a few odd ones (padding spaces, empty, one character, Unicode)."""
    with (data_root / "eedi" / "train.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:45]
    with (data_root / "eedi" / "misconception_mapping.csv").open(encoding="utf-8") as handle:
        names = [r["MisconceptionName"] for r in csv.DictReader(handle)][:30]
    found = []
    for row in rows:
        found += [row["QuestionText"], row["AnswerAText"], row["AnswerBText"], row["ConstructName"]]
    found += names
    found += [" ".join(r["QuestionText"] for r in rows[i : i + 6]) for i in range(0, 36, 6)]  # 300+ tokens
    found += ["   Subtracts the smaller digit from the larger   ", "", "x", "Ünïcödé café: 中文 ½ × ÷ √2 ≠ π"]
    # one text per token sequence ("Only Tom", "Only\nTom"): the same tokens tie exactly in a search
    seen, kept = set(), []
    for text, encoding in zip(found, NumpyEncoder(MINILM).tokenize(found), strict=True):
        if tuple(encoding.ids) not in seen:
            seen.add(tuple(encoding.ids))
            kept.append(text)
    return kept


@pytest.fixture(scope="module")
def both(texts):
    """(sentence-transformers' vectors, the numpy encoder's) of the texts."""
    pytest.importorskip("sentence_transformers")
    torch_side = Embedder(backend="torch")
    numpy_side = Embedder(backend="numpy")
    return torch_side.encode(texts), numpy_side.encode(texts)


def test_erf_is_accurate():
    x = np.linspace(-8, 8, 400_001).astype(np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    assert np.abs(erf(x).astype(np.float64) - exact).max() < 1e-6


def test_safetensors_are_read_as_the_safetensors_library_reads_them():
    numpy_io = pytest.importorskip("safetensors.numpy")
    ours = read_safetensors(MINILM / "model.safetensors")
    theirs = numpy_io.load_file(str(MINILM / "model.safetensors"))
    assert set(ours) == set(theirs)
    for name, array in theirs.items():
        assert ours[name].shape == array.shape and np.array_equal(ours[name], array.astype(ours[name].dtype)), name


def test_the_minilm_folder_is_understood():
    spec = describe_folder(MINILM)
    assert spec["pooling"] == "mean" and spec["normalize"] and spec["max_length"] == 256
    encoder = NumpyEncoder(MINILM)
    assert encoder.dim == 384 and len(encoder.layers) == 6 and encoder.heads == 12


def test_long_texts_are_truncated_as_sentence_transformers_truncates_them(texts):
    lengths = [len(e.ids) for e in NumpyEncoder(MINILM).tokenize(texts)]
    assert max(lengths) == 256 and sum(n == 256 for n in lengths) >= 5


def test_vectors_match_sentence_transformers(texts, both):
    reference, ours = both
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (len(texts), 384)
    assert len(texts) >= 180
    worst = np.abs(ours - reference).max(axis=1)
    cosines = (ours * reference).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    print(f"\nparity over {len(texts)} texts: max |diff| {worst.max():.2e}, min cosine {cosines.min():.8f}")
    assert worst.max() < 1e-4, texts[int(worst.argmax())]
    assert cosines.min() > 0.99999, texts[int(cosines.argmin())]
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_the_same_neighbours_come_back(both):
    """Each text's 25 nearest among all of them, in order. Two neighbours whose cosines differ by less
    than float32 noise (1e-6) may come in either order (printed)."""
    faiss = pytest.importorskip("faiss")
    (scores, reference), (_, ours) = [_search(faiss, vectors) for vectors in both]
    swapped = 0
    for row in range(len(reference)):
        for rank in np.flatnonzero(reference[row] != ours[row]):
            tied = np.abs(scores[row] - scores[row][rank]) < 1e-6
            assert ours[row][rank] in reference[row][tied], (row, rank)
            swapped += 1
    print(f"\ntop-25 of {len(reference)} texts: {swapped} neighbour(s) swapped with a tie")


def _search(faiss, vectors, k=25):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(vectors, k)


def test_batching_and_order_do_not_change_a_vector(texts, both):
    one_by_one = Embedder(backend="numpy", batch_size=1).encode(texts[:12])
    assert np.abs(one_by_one - both[1][:12]).max() < 1e-5


def test_speed_on_one_thread(texts):
    """Texts per second of each backend on one thread (printed; a shared machine's figures are rough)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    torch = pytest.importorskip("torch")
    speeds = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            for backend in ("torch", "numpy"):
                embedder = Embedder(backend=backend)
                embedder.encode(texts[:8])  # loaded and warm
                started = time.perf_counter()
                embedder.encode(texts)
                speeds[backend] = len(texts) / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    print(f"\n1 thread, {len(texts)} texts: " + ", ".join(f"{b} {s:.1f} texts/s" for b, s in speeds.items()))


# --- choosing the backend ------------------------------------------------------------------------


def test_the_backend_is_chosen_by_argument_environment_and_what_is_installed(monkeypatch):
    pytest.importorskip("sentence_transformers")
    assert Embedder(backend="numpy").backend == "numpy" and Embedder(backend="torch").backend == "torch"
    monkeypatch.setenv("MCQA_EMBEDDER_BACKEND", "numpy")
    assert Embedder().backend == "numpy"
    monkeypatch.setenv("MCQA_EMBEDDER_BACKEND", "torch")
    assert Embedder().backend == "torch"
    monkeypatch.setenv("MCQA_EMBEDDER_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="tensorflow"):
        _ = Embedder().backend
    monkeypatch.delenv("MCQA_EMBEDDER_BACKEND")
    assert Embedder().backend == "torch"  # auto, with sentence-transformers installed
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    assert Embedder().backend == "numpy"  # auto, without it


@pytest.fixture
def mpnet_like(tmp_path):
    """The MiniLM folder relabelled as an MPNet (all-mpnet-base-v2's config says model_type mpnet)."""
    folder = tmp_path / "mpnet-like"
    shutil.copytree(MINILM, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mpnet", "architectures": ["MPNetModel"]}))
    return folder


def test_a_model_numpy_does_not_run_needs_the_retrieval_extra(monkeypatch, mpnet_like):
    pytest.importorskip("sentence_transformers")
    assert "mpnet" in why_not(mpnet_like)
    with pytest.raises(UnsupportedModel, match="mpnet"):
        NumpyEncoder(mpnet_like)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingExtra, match=r"mpnet.*needs the 'retrieval' extra"):
        _ = Embedder(str(mpnet_like)).backend
    monkeypatch.delitem(sys.modules, "sentence_transformers")
    with pytest.raises(ValueError, match="numpy, but"):  # asked for numpy while torch is right there
        _ = Embedder(str(mpnet_like), backend="numpy").backend


def test_a_kaggle_bundle_of_eedi_or_map_needs_only_the_embed_extra():
    from mcqa.agent.graph import Agent, default_tasks
    from mcqa.config import load_config

    config = load_config()
    for dataset in ("eedi", "map"):
        used = Agent(config.agent.for_dataset(dataset), None, default_tasks(dataset)).resources_used()
        assert extras_for(used, config.llm.backend, light=True) == ["embed"], used
        assert extras_for(used | {"cross_encoder"}, config.llm.backend, light=True) == ["retrieval"]


def test_the_numpy_backend_imports_no_torch(tmp_path):
    """A fresh process encodes and searches with MCQA_EMBEDDER_BACKEND=numpy: none of torch,
    sentence-transformers, transformers, scikit-learn or scipy is imported."""
    code = (
        "import sys\n"
        "from mcqa.rag import Embedder\n"
        "from mcqa.rag.vectors import build_index\n"
        "e = Embedder()\n"
        "assert e.backend == 'numpy' and e.encode(['Adds the numerators']).shape == (1, 384)\n"
        "heavy = ['torch', 'sentence_transformers', 'transformers', 'sklearn', 'scipy', 'safetensors']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = {**os.environ, "MCQA_EMBEDDER_BACKEND": "numpy", "MCQA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
