"""The machinery under every store: a FAISS inner-product index, and its folder on disk with a manifest.

A saved folder holds `index.faiss` (FAISS's own format), `records.jsonl` (one JSON object per vector,
in index order) and `manifest.json` (kind, embedder, dimension, count, sha256 of both files). No
pickle anywhere: a folder from elsewhere can be loaded without running its code. The manifest is
written last, so a folder without one is an interrupted save, never a half-read index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np

from mcqa.config import default_threads
from mcqa.extras import require
from mcqa.rag.embedder import Embedder

faiss = require("faiss", "retrieval", "FAISS indexes")

FORMAT_VERSION = 1
INDEX_FILE, RECORDS_FILE, MANIFEST_FILE = "index.faiss", "records.jsonl", "manifest.json"
INDEX_KINDS = ("flat", "hnsw")
# HNSW settings measured in FACTS.md: at 100k x 384, recall 0.995 at a third of Flat's search time.
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64

faiss.omp_set_num_threads(default_threads())


class StoreError(ValueError):
    """A saved index folder that cannot be used: missing files, a checksum that fails, a wrong kind."""


class EmbedderMismatch(StoreError):
    """The folder was built by another embedder (or format, or dimension): its vectors mean nothing to this one."""


def build_index(vectors: np.ndarray, kind: str = "flat") -> faiss.Index:
    """An inner-product index over unit vectors (so scores are cosines). `flat` is exact; `hnsw` is for
    stores of ~100k vectors and more, where exact search stops being a few milliseconds."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(vectors)
    return index


def search_index(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions), best first, k capped at the index size; a position of -1 means no hit (HNSW)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != index.d:
        raise ValueError(f"query vectors of shape {vectors.shape} do not fit an index of dimension {index.d}")
    k = min(k, index.ntotal)
    if len(vectors) == 0 or k == 0:
        return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
    return index.search(vectors, k)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_records(records: list[dict]) -> str:
    """A checksum of records as canonical JSON: the key under which a cache keeps their index."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def index_kind(index: faiss.Index) -> str:
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


def save_folder(
    folder: Path, kind: str, embedder: Embedder, index: faiss.Index, records: list[dict], source: dict | None = None
) -> Path:
    """Write the index, its records and the manifest (last) into `folder`."""
    if index.ntotal != len(records):
        raise ValueError(f"{index.ntotal} vectors but {len(records)} records")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # an overwrite in progress is not a valid folder
    faiss.write_index(index, str(folder / INDEX_FILE))
    with (folder / RECORDS_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "embedder": embedder.describe(),
        "dim": index.d,
        "count": index.ntotal,
        "index": index_kind(index),
        "files": {name: sha256_of(folder / name) for name in (INDEX_FILE, RECORDS_FILE)},
        "source": source or {},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return folder


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise StoreError(f"{folder} is not a saved index: no {MANIFEST_FILE} (missing folder, or an interrupted save)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from exc


def check_embedder(manifest: dict, embedder: Embedder, folder: Path, encoded_as: str = "passage") -> None:
    """Refuse an index whose vectors came from another model, format or dimension (`encoded_as`: the
    kind of text its vectors were encoded as, whose format must match)."""
    built = manifest.get("embedder", {})
    fmt = f"{encoded_as}_format"
    differences = [
        f"{what} {built.get(key)!r} (now {now!r})"
        for what, key, now in (
            ("embedder", "name", embedder.name),
            (fmt.replace("_", " "), fmt, getattr(embedder, fmt)),
        )
        if built.get(key) != now
    ]
    if not differences and manifest.get("dim") != embedder.dim:
        differences.append(f"dimension {manifest.get('dim')} (now {embedder.dim})")
    if differences:
        raise EmbedderMismatch(
            f"{folder} was built with {', '.join(differences)}: its vectors are not comparable. "
            f"Load it with the embedder that built it, or rebuild it (`mcqa index build`)."
        )


def load_folder(
    folder: Path, kind: str, embedder: Embedder, encoded_as: str = "passage"
) -> tuple[faiss.Index, list[dict], dict]:
    """(index, records, manifest) of a saved folder, after checking kind, embedder and checksums."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{folder} has format version {manifest.get('format_version')}, this mcqa reads {FORMAT_VERSION}"
        )
    if manifest.get("kind") != kind:
        raise StoreError(f"{folder} holds {manifest.get('kind')!r}, not {kind!r}")
    check_embedder(manifest, embedder, folder, encoded_as)
    for name, expected in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise StoreError(f"{folder} is missing {name}")
        if sha256_of(path) != expected:
            raise StoreError(
                f"{path} does not match the checksum in its manifest: the folder was changed or "
                f"damaged after it was saved; rebuild it"
            )
    index = faiss.read_index(str(folder / INDEX_FILE))
    with (folder / RECORDS_FILE).open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    if not index.ntotal == len(records) == manifest.get("count"):
        raise StoreError(
            f"{folder}: {index.ntotal} vectors, {len(records)} records, manifest says {manifest.get('count')}"
        )
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, records, manifest
