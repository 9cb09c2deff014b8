"""MAP's n-gram classifier (mcqa.finetune.ngram): its analyser and TF-IDF match scikit-learn's on real
MAP explanations, its per-answer regressions give scikit-learn's probabilities, a saved model reads
back the same with numpy, and the agent fuses it (`agent.ngram: auto`) with the cache fitted once.
Real MAP rows throughout (the shared train file; the small MAP folder where the agent runs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.finetune.ngram import NgramClassifier, char_ngrams, fit_ngram, word_ngrams
from mcqa.rag.queries import query_format
from mcqa.rag.splits import load_items
from mcqa.rag.store import label_records

runner = CliRunner()
ODD = ["  Multiply\tthe\n denominator  by 2 ", "1/3 > 1/4 because 3<4!!", "é ü ß, x²", "a", "", "I I I i"]


@pytest.fixture(scope="module")
def records():
    """Label-store records (text, answer group, label) of 1,200 `fit` responses to the shared MAP file."""
    fit = load_items("map", "fit")
    return label_records(fit[:: max(1, len(fit) // 1200)][:1200], query_format("subject_correct"))


def test_the_analyser_is_scikit_learns_word_and_char_wb_ngrams(records):
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    for text in [r["text"] for r in records[:300]] + ODD:
        assert sorted(word_ngrams(text)) == sorted(f"w {g}" for g in words(text)), text
        assert sorted(char_ngrams(text)) == sorted(f"c {g}" for g in chars(text)), text


def test_the_features_are_scikit_learns_tfidf_blocks(records):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [r["text"] for r in records]
    model = fit_ngram(texts, [r["group"] for r in records], [r["label"] for r in records], {})
    for prefix, vectorizer in (
        ("w ", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
        ("c ", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
    ):
        matrix = vectorizer.fit_transform(texts)
        names = vectorizer.get_feature_names_out()
        assert sorted(prefix + n for n in names) == [g for g in model.vocabulary if g.startswith(prefix)]
        for row in (0, 7, len(texts) - 1):
            ours = {model.vocabulary[c]: v for c, v in model.features(texts[row]).items()}
            theirs = {prefix + names[c]: v for c, v in zip(matrix[row].indices, matrix[row].data, strict=True)}
            assert set(theirs) == {g for g in ours if g.startswith(prefix)}
            for gram, value in theirs.items():
                assert ours[gram] == pytest.approx(value, abs=1e-5), gram


def test_each_answer_gets_scikit_learns_regression_and_unseen_answers_get_nothing(records, tmp_path):
    from sklearn.linear_model import LogisticRegression

    texts, groups, labels = ([r[key] for r in records] for key in ("text", "group", "label"))
    model = fit_ngram(texts, groups, labels, {"fitted_on": "test"})
    probs = model.predict(texts[:200], groups[:200])
    assert probs.shape == (200, len(model.labels)) and model.labels == sorted(set(labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the largest answer group, fitted again with scikit-learn on the same features: the same probabilities
    biggest = max(set(groups), key=groups.count)
    rows = [n for n, g in enumerate(groups) if g == biggest]
    fitted = model.groups[biggest]
    assert fitted["weights"] is not None and len(fitted["labels"]) >= 2
    dense = np.zeros((len(rows), len(fitted["columns"])))
    for i, n in enumerate(rows):
        for col, value in model.features(texts[n]).items():
            dense[i, fitted["position"][col]] = value
    reference = LogisticRegression(C=3.0, max_iter=1000).fit(dense, [labels[n] for n in rows])
    ours = model.predict([texts[n] for n in rows], [biggest] * len(rows))
    columns = [model.labels.index(c) for c in reference.classes_]
    np.testing.assert_allclose(ours[:, columns], reference.predict_proba(dense), atol=1e-3)
    assert set(np.flatnonzero(ours.sum(axis=0))) <= set(columns), "a group ranks only its own labels"
    # an answer never seen: a zero row (no evidence), not a guess
    assert not model.predict([texts[0]], ["a question nobody answered\nan answer"]).any()
    # saved as plain arrays, read back with numpy: the same probabilities
    model.save(tmp_path / "ngram")
    with np.load(tmp_path / "ngram" / "ngram.npz", allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)
    again = NgramClassifier.load(tmp_path / "ngram")
    np.testing.assert_allclose(again.predict(texts[:200], groups[:200]), probs, atol=1e-6)
    assert again.meta == {"fitted_on": "test"}


def test_a_one_label_answer_is_certain_and_a_single_label_store_is_refused():
    model = fit_ngram(["add the tops", "add the bottoms", "times it"], ["g1", "g1", "g2"], ["A", "A", "B"], {})
    np.testing.assert_array_equal(model.predict(["anything"], ["g1"]), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="at least 2 labels"):
        fit_ngram(["x y", "y z"], ["g", "g"], ["A", "A"], {})


def eval_run(small_map, out, *extra):
    result = runner.invoke(
        app, ["eval", "run", "--dataset", "map", "--split", "validation", "--out", str(out), "--no-traces", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text()), [
        json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()
    ]


def test_the_agent_ranks_by_the_ngram_classifier_when_its_weight_dominates(small_map, tmp_path, monkeypatch):
    from mcqa.rag.store import answer_group

    monkeypatch.setenv("MCQA_DATA_DIR", str(small_map))
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "cache"))
    dominate = ["--set", "agent.ngram=auto", "--set", "agent.ngram_weight=1000000", "--set", "agent.classifier=none"]
    metrics, predictions = eval_run(small_map, tmp_path / "ngram", *dominate, "--set", "agent.label_space=all")
    (cached,) = (tmp_path / "cache" / "indexes").glob("ngram-map-*")
    model = NgramClassifier.load(cached)
    assert model.meta["fitted_on"] == "label store"
    items = load_items("map", "validation")
    texts = [label_records([it], query_format("subject_correct"))[0]["text"] for it in items]
    probs = model.predict(texts, [answer_group(it, it.chosen) for it in items])
    tops = {p["item_id"]: next(iter(p["misconceptions"].values()))[0] for p in predictions}
    seen = [(it, row) for it, row in zip(items, probs, strict=True) if row.any()]
    assert len(seen) > len(items) // 2
    for item, row in seen:
        assert tops[item.id].split("_", 1)[1] == model.labels[int(np.argmax(row))], item.id
    # fitted once: a second run reads the cached model
    stamp = (cached / "ngram.npz").stat().st_mtime_ns
    eval_run(small_map, tmp_path / "again", *dominate)
    assert (cached / "ngram.npz").stat().st_mtime_ns == stamp
    plain, _ = eval_run(
        small_map, tmp_path / "plain", "--set", "agent.classifier=none", "--set", "agent.label_space=all"
    )
    assert metrics["map_competition"]["map@3"] != plain["map_competition"]["map@3"]
