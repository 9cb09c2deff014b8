"""The Embedder, the query formats and the fit/validation split, on the real MiniLM and the real Eedi data."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mcqa.datasets import load_split
from mcqa.models import ModelNotFound, resolve
from mcqa.rag import DEFAULT_QUERY_FORMAT, QUERY_FORMATS, Embedder, item_text, labelled_pairs, train_validation
from mcqa.rag.splits import load_items, question_of
from mcqa.types import Item


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def eedi_items(data_root):
    return load_split("eedi", "train", data_root).items


def labels(items):
    return {m for item in items for ids in item.misconceptions.values() for m in ids}


# --- Embedder ------------------------------------------------------------------------------------


def test_vectors_are_float32_unit_rows_in_order(embedder):
    texts = ["Adds the numerators and the denominators", "Confuses area and perimeter", "x"]
    vectors = embedder.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384) and vectors.flags.c_contiguous
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(embedder.encode(texts[1:2])[0], vectors[1], atol=1e-5)  # order and batching do not matter
    assert embedder.dim == 384 and embedder.name == "minilm-l6"


def test_same_meaning_scores_higher_than_unrelated(embedder):
    query, near, far = embedder.encode(
        [
            "mixes up area and perimeter",
            "Confuses perimeter and area",
            "Believes a negative times a negative is negative",
        ],
        kind="query",
    )
    assert query @ near > query @ far + 0.2


def test_formats_are_applied_per_kind(embedder):
    formatted = Embedder(query_format="query: {text}", passage_format="passage: {text}")
    raw = embedder.encode(["query: halves the base", "passage: halves the base"])
    assert np.allclose(formatted.encode(["halves the base"], kind="query")[0], raw[0], atol=1e-5)
    assert np.allclose(formatted.encode(["halves the base"], kind="passage")[0], raw[1], atol=1e-5)
    assert not np.allclose(raw[0], raw[1], atol=1e-3)
    assert formatted.format(["a {b}"], "query") == ["query: a {b}"]  # braces in a text are not a template


def test_empty_input_and_bad_arguments(embedder):
    assert embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.encode("one string")
    with pytest.raises(ValueError, match="kind"):
        embedder.encode(["x"], kind="document")
    with pytest.raises(ValueError, match="exactly once"):
        Embedder(query_format="query: ")
    with pytest.raises(ModelNotFound, match="no embedder"):
        Embedder("no-such-embedder")


def test_progress_callback_counts_every_text(embedder, monkeypatch):
    import mcqa.rag.embedder

    monkeypatch.setattr(mcqa.rag.embedder, "PROGRESS_CHUNK", 4)  # a small chunk: the same path, fewer texts
    texts, seen = [f"misconception {i}" for i in range(10)], []
    vectors = embedder.encode(texts, progress=seen.append)
    assert seen == [4, 4, 2]
    assert np.allclose(vectors, embedder.encode(texts), atol=1e-5)


def test_a_local_folder_is_named_by_its_path_and_loads_the_same_model(embedder, tmp_path):
    copy = shutil.copytree(resolve("minilm-l6", kind="embedder"), tmp_path / "my-minilm")
    local = Embedder(str(copy))
    assert local.name == str(copy.resolve()) and local.name != embedder.name
    assert local.fingerprint != embedder.fingerprint
    text = ["Thinks a quadrilateral has five sides"]
    assert np.allclose(local.encode(text), embedder.encode(text), atol=1e-5)


def test_the_model_is_loaded_once_per_process(embedder):
    assert Embedder(query_format="q: {text}").model is embedder.model


# --- query formats ---------------------------------------------------------------------------------


def test_every_format_carries_question_and_wrong_answer(eedi_items):
    item, wrong, _ = next(labelled_pairs(eedi_items))
    assert DEFAULT_QUERY_FORMAT in QUERY_FORMATS and len(QUERY_FORMATS) >= 3
    for name, build in QUERY_FORMATS.items():
        text = build(item, wrong)
        assert " ".join(item.choice(wrong).split()) in text, name
        assert " ".join(item.question.split())[:40] in text, name
        assert item.construct in text, name
    assert QUERY_FORMATS["hashes"](item, wrong).count(" ### ") == 2
    assert QUERY_FORMATS["category"](item, wrong).startswith(f"Category: {item.construct}. Question: ")
    full = QUERY_FORMATS["subject_correct"](item, wrong)
    assert item.subject in full and " ".join(item.choice(item.answer).split()) in full


def test_formats_leave_out_missing_fields_and_reject_bad_letters():
    item = Item(id="q", question="2 + 2 = ?", choices=["4", "5"], answer="A")
    for build in QUERY_FORMATS.values():
        assert "None" not in build(item, "B") and "5" in build(item, "B")
        with pytest.raises(ValueError, match="not one of its choice letters"):
            build(item, "C")


def test_labelled_pairs_are_every_labelled_wrong_answer(eedi_items, data_root):
    pairs = list(labelled_pairs(eedi_items))
    # counted from the file without the adapter: a misconception id given for a wrong answer
    with (data_root / "eedi" / "train.csv").open(newline="", encoding="utf-8") as handle:
        in_file = sum(
            1
            for row in csv.DictReader(handle)
            for x in "ABCD"
            if x != row["CorrectAnswer"] and row[f"Misconception{x}Id"].strip()
        )
    assert in_file > 0 and len(pairs) == sum(len(i.misconceptions) for i in eedi_items) == in_file
    assert all(letter != item.answer for item, letter, _ in pairs)


def test_item_text_shows_question_and_choices_but_not_the_answer(eedi_items):
    item = eedi_items[0]
    text = item_text(item)
    assert all(" ".join(c.split()) in text for c in item.choices)
    assert text == item_text(item.model_copy(update={"answer": None, "misconceptions": {}}))


# --- fit/validation split ----------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete(eedi_items):
    fit, validation = train_validation(eedi_items, fraction=0.2, seed=0)
    again = train_validation(eedi_items, fraction=0.2, seed=0)
    assert [i.id for i in fit] == [i.id for i in again[0]] and [i.id for i in validation] == [i.id for i in again[1]]
    assert len(validation) == round(0.2 * len(eedi_items))
    assert {i.id for i in fit}.isdisjoint(i.id for i in validation)
    assert len(fit) + len(validation) == len(eedi_items)
    other = train_validation(eedi_items, fraction=0.2, seed=1)[1]
    assert {i.id for i in other} != {i.id for i in validation}
    assert labels(fit) & labels(validation)  # seen mode: shared misconceptions are expected


def test_unseen_split_keeps_validation_misconceptions_out_of_fit(eedi_items):
    fit, validation = train_validation(eedi_items, fraction=0.2, seed=0, unseen=True)
    assert labels(validation) and labels(fit).isdisjoint(labels(validation))
    assert len(fit) + len(validation) == len(eedi_items)
    assert abs(len(validation) - 0.2 * len(eedi_items)) <= 5


def test_split_is_the_same_in_every_process(data_root):
    """Python salts string hashes per process: a split that leaned on set order would change between runs."""
    code = (
        "from pathlib import Path; from mcqa.datasets import load_split; "
        "from mcqa.rag.splits import train_validation; "
        f"items = load_split('eedi', 'train', Path({str(data_root)!r})).items; "
        "print(','.join(i.id for unseen in (False, True) for i in train_validation(items, unseen=unseen)[1]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1 and len(outputs.pop().split(",")) > 500


def test_split_groups_responses_of_one_question():
    items = [
        Item(id=f"r{q}-{r}", question=f"question {q}", choices=["a", "b"], metadata={"question_id": str(q)})
        for q in range(10)
        for r in range(5)
    ]
    fit, validation = train_validation(items, fraction=0.3, seed=2)
    assert len({question_of(i) for i in validation}) == 3
    assert {question_of(i) for i in fit}.isdisjoint(question_of(i) for i in validation)


def test_derived_split_names(data_root, eedi_items):
    validation = load_items("eedi", "validation", data_root)
    fit = load_items("eedi", "fit", data_root)
    assert len(validation) + len(fit) == len(eedi_items)
    assert load_items("eedi", "train", data_root) == eedi_items
    with pytest.raises(ValueError, match="fraction"):
        train_validation(eedi_items, fraction=1.0)
