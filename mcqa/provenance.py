"""What produced a run: the mcqa version, the git commit of a checkout, and the model files' checksums.

A run folder records these (run.json), so a figure can be traced to the code and the weights behind
it, and a resumed run can tell that the model behind a registry name changed. A model's checksum is
a SHA-256 of its file (or, for a folder, of its files' names and contents); hashing a 1 GB GGUF
takes a few seconds, so checksums are cached by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import mcqa
from mcqa.config import REPO_ROOT, cache_dir

CHUNK = 1 << 20


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checkout's commit, with `+dirty` when tracked files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, in name order), cached."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    store = cache_dir() / "checksums.json"
    try:
        cached = json.loads(store.read_text())
    except (OSError, ValueError):
        cached = {}
    key = hashlib.sha256(stamp.encode()).hexdigest()
    if key in cached:
        return cached[key]
    if path.is_dir():
        digest = hashlib.sha256()
        for p in files:
            digest.update(f"{p.relative_to(path)}\0{_sha256_file(p)}\n".encode())
        value = digest.hexdigest()
    else:
        value = _sha256_file(path)
    cached[key] = value
    try:
        tmp = store.with_suffix(f".{key[:8]}.tmp")
        tmp.write_text(json.dumps(cached))
        tmp.replace(store)
    except OSError:
        pass  # a read-only cache costs a re-hash next time, nothing else
    return value


def model_checksums(config, resources_used: set[str]) -> dict[str, dict]:
    """{role: {"name", "path", "sha256"}} for the models a run loads: the LLM (and its LoRA adapter)
    when it uses one, the embedder(s) when it retrieves, the fine-tuned sequence classifier. A model that cannot be found is left out
    (the run fails on it later with its own message)."""
    from mcqa.models import ModelNotFound, resolve

    wanted: list[tuple[str, str | None, str]] = []
    if "llm" in resources_used:
        if config.llm.backend != "openai":  # a served model's weights are on the server, not here
            wanted.append(("llm", config.llm.model, "llm"))
        if config.llm.lora:
            wanted.append(("lora", config.llm.lora, "adapter"))
    if resources_used & {"embedder", "examples", "misconceptions", "labels"}:
        wanted.append(("embedder", config.agent.embedder, "embedder"))
        for n, name in enumerate(config.agent.embedders or [], start=1):
            wanted.append((f"embedder.{n}", name, "embedder"))
    if "seqclass" in resources_used:
        wanted.append(("seqclass", config.agent.seqclass, "adapter"))  # a folder, read as it is
    found = {}
    for role, name, kind in wanted:
        try:
            path = Path(name) if kind == "adapter" else resolve(name, kind)
            if path.exists():
                found[role] = {"name": name, "path": str(path), "sha256": checksum(path)}
        except (ModelNotFound, OSError):
            continue
    return found


def provenance(config, resources_used: set[str]) -> dict:
    """The version, commit and model checksums of the run being started or resumed."""
    return {
        "mcqa_version": mcqa.__version__,
        "commit": git_commit(),
        "models": model_checksums(config, resources_used),
    }
