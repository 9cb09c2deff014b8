"""Example stores and misconception indexes: build, search, save, load, mismatch, cache, and hard-negative
mining, on real Eedi slices with the real MiniLM and real FAISS."""

import csv
import json
import shutil
from itertools import islice

import numpy as np
import pytest

from mcqa.datasets import load_misconceptions, load_split
from mcqa.models import resolve
from mcqa.rag import (
    DEFAULT_QUERY_FORMAT,
    QUERY_FORMATS,
    Embedder,
    EmbedderMismatch,
    ExampleStore,
    MisconceptionIndex,
    StoreError,
    labelled_pairs,
    load_or_build_example_store,
    load_or_build_misconception_index,
    mine,
    training_pairs,
)
from mcqa.rag.cache import cache_key
from mcqa.rag.vectors import MANIFEST_FILE, RECORDS_FILE, build_index

N_ITEMS, N_MISCONCEPTIONS = 40, 200


def write_mini_eedi(root, n_items=N_ITEMS, n_misconceptions=N_MISCONCEPTIONS):
    """A real slice of Eedi under root/eedi: the first n_items questions and a catalogue of n_misconceptions
    that holds every misconception those questions are labelled with (the rest in id order)."""
    from mcqa.config import data_dir

    source, folder = data_dir() / "eedi", root / "eedi"
    folder.mkdir(parents=True, exist_ok=True)
    with (source / "train.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(islice(reader, n_items))
        fields = reader.fieldnames
    with (folder / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(source / "test.csv", folder / "test.csv")
    labelled = {
        str(int(float(row[f"Misconception{x}Id"]))) for row in rows for x in "ABCD" if row.get(f"Misconception{x}Id")
    }
    catalogue = load_misconceptions("eedi", data_dir())
    chosen = [m for m in catalogue if m.id in labelled]
    chosen += [m for m in catalogue if m.id not in labelled][: n_misconceptions - len(chosen)]
    with (folder / "misconception_mapping.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["MisconceptionId", "MisconceptionName"])
        writer.writerows((m.id, m.name) for m in sorted(chosen, key=lambda m: int(m.id)))
    return root


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    return write_mini_eedi(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def items(mini_root):
    return load_split("eedi", "train", mini_root).items


@pytest.fixture(scope="module")
def catalogue(mini_root):
    return load_misconceptions("eedi", mini_root)


@pytest.fixture(scope="module")
def store(items, embedder):
    return ExampleStore.build(items, embedder)


@pytest.fixture(scope="module")
def misconception_index(catalogue, embedder):
    return MisconceptionIndex.build(catalogue, embedder)


# --- ExampleStore ------------------------------------------------------------------------------------


def test_an_item_never_finds_itself(store, items):
    results = store.search(items, k=5)
    assert len(results) == len(items)
    for item, hits in zip(items, results, strict=True):
        assert len(hits) == 5 and item.id not in {h.id for h in hits}


def test_a_copy_under_another_id_is_left_out_and_a_near_copy_found_first(store, items):
    copy = items[7].model_copy(update={"id": "copy-of-7"})
    (hits,) = store.search([copy], k=3)
    assert len(hits) == 3 and items[7].id not in {h.id for h in hits}  # it would hand the model its answer
    near = items[7].model_copy(update={"id": "near-7", "question": items[7].question + " Explain why."})
    (((best, score), *_),) = store.search_scored([near], k=3)
    assert best.id == items[7].id and score > 0.9


def test_hits_come_best_first_with_the_items_intact(store, items):
    (hits,) = store.search_scored(items[:1], k=10)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    by_id = {i.id: i for i in items}
    assert all(hit == by_id[hit.id] for hit, _ in hits)  # answers and labels come back with the item


def test_save_load_roundtrip_with_manifest(store, items, embedder, tmp_path):
    store.save(tmp_path / "examples")
    manifest = json.loads((tmp_path / "examples" / MANIFEST_FILE).read_text())
    assert manifest["kind"] == "examples" and manifest["count"] == len(items) and manifest["dim"] == 384
    assert manifest["embedder"]["name"] == "minilm-l6" and manifest["index"] == "flat"
    assert set(manifest["files"]) == {"index.faiss", RECORDS_FILE} and all(
        len(v) == 64 for v in manifest["files"].values()
    )
    assert not list((tmp_path / "examples").glob("*.pkl"))
    loaded = ExampleStore.load(tmp_path / "examples", embedder)
    assert loaded.items == store.items and loaded.folder == tmp_path / "examples"
    assert [[h.id for h in row] for row in loaded.search(items[:10], 5)] == [
        [h.id for h in row] for row in store.search(items[:10], 5)
    ]


def test_loading_with_another_embedder_is_a_clear_error(store, embedder, tmp_path):
    store.save(tmp_path / "examples")
    copy = shutil.copytree(resolve("minilm-l6", kind="embedder"), tmp_path / "other-minilm")
    with pytest.raises(EmbedderMismatch, match=r"built with embedder 'minilm-l6'.*other-minilm"):
        ExampleStore.load(tmp_path / "examples", Embedder(str(copy)))
    with pytest.raises(EmbedderMismatch, match="passage format"):
        ExampleStore.load(tmp_path / "examples", Embedder(passage_format="passage: {text}"))
    with pytest.raises(StoreError, match="holds 'examples', not 'misconceptions'"):
        MisconceptionIndex.load(tmp_path / "examples", embedder)


def test_a_changed_or_missing_folder_is_refused(store, embedder, tmp_path):
    folder = tmp_path / "examples"
    store.save(folder)
    with (folder / RECORDS_FILE).open("a") as handle:
        handle.write("\n")
    with pytest.raises(StoreError, match="checksum"):
        ExampleStore.load(folder, embedder)
    with pytest.raises(StoreError, match="no manifest.json"):
        ExampleStore.load(tmp_path / "nowhere", embedder)


def test_hnsw_store_agrees_with_flat(items, embedder, store, tmp_path):
    hnsw = ExampleStore(items, build_index(store.index.reconstruct_n(0, len(items)), "hnsw"), embedder)
    assert hnsw.index.hnsw.efSearch == 64
    flat_hits = store.search(items[:20], 5)
    hnsw_hits = hnsw.search(items[:20], 5)
    overlap = np.mean(
        [len({h.id for h in a} & {h.id for h in b}) / 5 for a, b in zip(flat_hits, hnsw_hits, strict=True)]
    )
    assert overlap >= 0.9
    assert all(item.id not in {h.id for h in hits} for item, hits in zip(items[:20], hnsw_hits, strict=True))
    hnsw.save(tmp_path / "hnsw")
    assert json.loads((tmp_path / "hnsw" / MANIFEST_FILE).read_text())["index"] == "hnsw"
    assert [[h.id for h in row] for row in ExampleStore.load(tmp_path / "hnsw", embedder).search(items[:20], 5)] == [
        [h.id for h in row] for row in hnsw_hits
    ]


def test_duplicate_ids_are_refused(items, embedder):
    with pytest.raises(ValueError, match="unique"):
        ExampleStore.build([items[0], items[0]], embedder)


# --- MisconceptionIndex ------------------------------------------------------------------------------


def test_a_misconception_name_finds_itself(misconception_index, catalogue):
    sample = catalogue[::20]
    results = misconception_index.search([m.name for m in sample], k=3)
    for misconception, hits in zip(sample, results, strict=True):
        assert hits[0][0] == misconception.id and hits[0][1] > 0.99
        assert misconception_index.name_of(hits[0][0]) == misconception.name
    with pytest.raises(KeyError, match="no misconception"):
        misconception_index.name_of("not-an-id")


def test_retrieval_beats_chance_on_real_wrong_answers(misconception_index, items):
    """Zero-shot MiniLM against a 200-entry catalogue: the label is in the top 25 far more often than 25/200."""
    pairs = list(labelled_pairs(items))
    build = QUERY_FORMATS[DEFAULT_QUERY_FORMAT]
    results = misconception_index.search([build(item, letter) for item, letter, _ in pairs], k=25)
    recall = np.mean(
        [bool(set(ids) & {mid for mid, _ in hits}) for (_, _, ids), hits in zip(pairs, results, strict=True)]
    )
    assert recall > 0.4


def test_misconception_index_roundtrip_and_mismatch(misconception_index, catalogue, embedder, tmp_path):
    misconception_index.save(tmp_path / "m")
    loaded = MisconceptionIndex.load(tmp_path / "m", embedder)
    assert loaded.misconceptions == catalogue
    queries = ["Thinks you add the denominators", "Confuses area and perimeter"]
    assert loaded.search(queries, 5) == misconception_index.search(queries, 5)
    with pytest.raises(EmbedderMismatch):
        MisconceptionIndex.load(tmp_path / "m", Embedder(passage_format="Misconception: {text}"))


def test_cached_index_is_built_once_and_keyed_by_embedder(mini_root, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "cache"))
    first = load_or_build_misconception_index("eedi", embedder, mini_root)
    folders = list((tmp_path / "cache" / "indexes").iterdir())
    assert [f.name for f in folders] == [first.folder.name] and first.folder.name.startswith("misconceptions-eedi-")
    manifest = json.loads((first.folder / MANIFEST_FILE).read_text())
    assert manifest["source"]["catalogue_sha256"] and manifest["count"] == N_MISCONCEPTIONS
    mtime = (first.folder / MANIFEST_FILE).stat().st_mtime_ns
    second = load_or_build_misconception_index("eedi", embedder, mini_root)
    assert second.folder == first.folder and (first.folder / MANIFEST_FILE).stat().st_mtime_ns == mtime
    assert second.search(["Confuses area and perimeter"], 3) == first.search(["Confuses area and perimeter"], 3)
    checksum = manifest["source"]["catalogue_sha256"]
    other = Embedder(passage_format="Misconception: {text}")
    assert first.folder.name.endswith(cache_key(checksum, embedder))
    assert cache_key(checksum, other) != cache_key(
        checksum, embedder
    )  # another format: another index, never a stale one


def test_cached_example_store_of_the_fit_side(mini_root, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "cache"))
    store = load_or_build_example_store("eedi", "fit", embedder, mini_root)
    validation_ids = {i.id for i in load_or_build_example_store("eedi", "validation", embedder, mini_root).items}
    assert len(store) == 32 and validation_ids.isdisjoint(i.id for i in store.items)
    assert store.source["split"] == "fit" and store.source["seed"] == 0
    again = load_or_build_example_store("eedi", "fit", embedder, mini_root)
    assert again.folder == store.folder and [i.id for i in again.items] == [i.id for i in store.items]


# --- hard negatives ------------------------------------------------------------------------------------


def test_mined_negatives_come_from_the_rank_window_and_are_never_positives(
    items, catalogue, embedder, misconception_index
):
    pairs = training_pairs(items[:12], catalogue, DEFAULT_QUERY_FORMAT)
    rows = mine(pairs, catalogue, embedder, rank_min=2, rank_max=40, n=5, sampling="random", seed=0)
    assert len(rows) == len(pairs) > 12
    positives_of = {}
    for pair in pairs:
        positives_of.setdefault(pair["query"], set()).add(pair["positive_id"])
    names = {m.id: m.name for m in catalogue}
    ranked = misconception_index.search([row["query"] for row in rows], k=len(catalogue))
    for row, hits in zip(rows, ranked, strict=True):
        assert len(row["negatives"]) == len(set(row["negatives"])) == 5
        assert not positives_of[row["query"]] & set(row["negative_ids"])
        assert [names[i] for i in row["negative_ids"]] == row["negatives"]
        assert row["positive"] == names[row["positive_id"]]
        order = [mid for mid, _ in hits if mid not in positives_of[row["query"]]]
        ranks = [order.index(mid) for mid in row["negative_ids"]]
        assert all(2 <= r < 40 for r in ranks), ranks
    again = mine(pairs, catalogue, embedder, rank_min=2, rank_max=40, n=5, sampling="random", seed=0)
    assert again == rows  # seeded


def test_top_sampling_takes_the_first_ranks_and_bad_windows_are_refused(
    items, catalogue, embedder, misconception_index
):
    pairs = training_pairs(items[:4], catalogue, "hashes")
    rows = mine(pairs, catalogue, embedder, rank_min=0, rank_max=10, n=3, sampling="top")
    for row in rows:
        positives = {p["positive_id"] for p in pairs if p["query"] == row["query"]}
        top = [mid for mid, _ in misconception_index.search([row["query"]], k=10)[0] if mid not in positives][:3]
        assert row["negative_ids"] == top
    with pytest.raises(ValueError, match="cannot draw"):
        mine(pairs, catalogue, embedder, rank_min=5, rank_max=7, n=3)
    with pytest.raises(ValueError, match="lower rank_max"):
        mine(pairs, catalogue, embedder, rank_min=2, rank_max=500, n=3)
