"""Indexes built once and reused: the agent asks for one per run and gets the saved copy after the first.

A cached folder lives under `cache_dir()/indexes/` and is named after a checksum of what went in
(the catalogue or the items as canonical JSON) and of the embedder (name, weights fingerprint,
passage format). Change any of them and the name changes, so a stale index is never served; a folder
that fails its checks is rebuilt. A build is written to a temporary folder and renamed into place, so
two processes building at once never see each other's half-written files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mcqa.config import cache_dir
from mcqa.datasets import load_misconceptions
from mcqa.rag.embedder import Embedder
from mcqa.rag.sources import ExampleSource
from mcqa.rag.splits import DERIVED_SPLITS, load_items, unseen_mode
from mcqa.rag.store import ExampleStore, LabelStore, MisconceptionIndex
from mcqa.rag.vectors import StoreError, sha256_of_records

T = TypeVar("T", ExampleStore, MisconceptionIndex, LabelStore)


def indexes_dir() -> Path:
    return cache_dir() / "indexes"


def cache_key(content_checksum: str, embedder: Embedder) -> str:
    identity = json.dumps({"content": content_checksum, **embedder.describe()}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def load_or_build(folder: Path, load: Callable[[Path], T], build: Callable[[], T]) -> T:
    """`load(folder)`, or `build()` saved there first (atomically; a damaged folder is rebuilt)."""
    if folder.is_dir():
        try:
            return load(folder)
        except StoreError:
            shutil.rmtree(folder, ignore_errors=True)  # damaged or interrupted: rebuild below
    built = build()
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    built.save(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first: its copy is equivalent
        shutil.rmtree(partial, ignore_errors=True)
    built.folder = folder
    return built


def load_or_build_misconception_index(
    dataset: str, embedder: Embedder, root: Path | None = None, progress: bool = False
) -> MisconceptionIndex:
    """The misconception index of `dataset`'s catalogue (eedi, map), built on first use and cached."""
    misconceptions = load_misconceptions(dataset, root)
    checksum = sha256_of_records([m.model_dump(mode="json") for m in misconceptions])
    folder = indexes_dir() / f"misconceptions-{dataset}-{cache_key(checksum, embedder)}"
    source = {"dataset": dataset, "catalogue_sha256": checksum}
    return load_or_build(
        folder,
        lambda f: MisconceptionIndex.load(f, embedder),
        lambda: MisconceptionIndex.build(misconceptions, embedder, progress=progress, source=source),
    )


def load_or_build_example_store(
    dataset: str,
    split: str,
    embedder: Embedder,
    root: Path | None = None,
    progress: bool = False,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    unseen: bool = False,
    index: str = "flat",
) -> ExampleStore:
    """The example store of a split (`fit` is the train side of the validation split), built once and cached."""
    source = {"dataset": dataset, "split": split}
    if split in DERIVED_SPLITS:
        source.update(fraction=fraction, seed=seed, unseen=unseen_mode(split, unseen))
    return load_or_build_example_store_of(
        load_items(dataset, split, root, fraction, seed, unseen),
        f"{dataset}-{split}",
        source,
        embedder,
        progress,
        index=index,
    )


def load_or_build_example_store_of(
    items: list, name: str, source: dict, embedder: Embedder, progress: bool = False, *, index: str = "flat"
) -> ExampleStore:
    """The example store of items already loaded (a split, a user's file), built once and cached under
    `examples-NAME-...`; `source` says where they came from and is recorded with their checksum.

    Only labelled items are stored: an example without its answer teaches nothing.
    """
    items = [i for i in items if i.answer is not None]
    checksum = sha256_of_records([i.model_dump(mode="json") for i in items])
    folder = indexes_dir() / f"examples-{_safe(name)}-{index}-{cache_key(checksum, embedder)}"
    source = {**source, "items_sha256": checksum}
    return load_or_build(
        folder,
        lambda f: ExampleStore.load(f, embedder),
        lambda: ExampleStore.build(items, embedder, index=index, progress=progress, source=source),
    )


def load_or_build_examples(
    source: ExampleSource, embedder: Embedder, root: Path | None = None, progress: bool = False
) -> ExampleStore:
    """The few-shot store of an `ExampleSource` (the agent's `examples`): a dataset split's cached store,
    or a file's, named after it. ValueError if it holds no labelled item: few-shot would show nothing."""
    if source.path is None:
        store = load_or_build_example_store(source.dataset, source.split, embedder, root, progress)
    else:
        store = load_or_build_example_store_of(
            source.load(root), f"file-{source.path.stem}", source.describe(), embedder, progress
        )
    if not len(store):
        raise ValueError(
            f"few-shot examples {source}: no item with an answer to show"
            + (" (map the answer column in examples_columns)" if source.path is not None else "")
        )
    return store


def _safe(name: str) -> str:
    """A name fit for a folder (a user's file stem may hold anything)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def load_or_build_label_store(
    dataset: str, split: str, embedder: Embedder, query_format: str, root: Path | None = None, progress: bool = False
) -> LabelStore:
    """The labelled answers of a split (`fit` when solving `validation`), written in `query_format`
    (the agent's retrieval query, mcqa.rag.queries), built once and cached."""
    from mcqa.rag.queries import query_format as format_named

    items, checksum = labelled_items(load_items(dataset, split, root), query_format)
    folder = indexes_dir() / f"labels-{dataset}-{split}-{cache_key(checksum, embedder)}"
    source = {"dataset": dataset, "split": split, "query_format": query_format, "items_sha256": checksum}
    return load_or_build(
        folder,
        lambda f: LabelStore.load(f, embedder),
        lambda: LabelStore.build(items, embedder, format_named(query_format), progress=progress, source=source),
    )


def labelled_items(items: list, query_format: str) -> tuple[list, str]:
    """The items with a labelled answer, and the checksum a label store built from them in that format
    records (a Kaggle run compares it with the competition's own train file)."""
    from mcqa.rag.queries import evidence_labels

    kept = [i for i in items if evidence_labels(i)]
    return kept, sha256_of_records([{"format": query_format}, *(i.model_dump(mode="json") for i in kept)])
