"""The report step on real Eedi items: metrics.json is strict JSON, report.md has the tables,
report.html is one self-contained file with every figure and the worst answers' trace commands.

The predictions here are written by hand (each gold misconception placed at a chosen rank, a few
confident wrong answers, a flip), so the figures they must produce are known; the solver that
would make them is exercised in test_eval_cli.py and test_eval_crash.py.
"""

import json

import pytest

from mcqa.datasets import load_split
from mcqa.eval.report import write_reports
from mcqa.eval.summary import summarize
from mcqa.types import Prediction


@pytest.fixture(scope="module")
def eedi_items(data_root):
    return load_split("eedi", "train", data_root).items[:12]


def hand_made(items):
    predictions = {}
    for number, item in enumerate(items):
        wrong = [x for x in item.letters if x != item.answer]
        answer = item.answer if number % 3 else wrong[0]  # every third item answered wrong
        probs = {x: 0.1 for x in item.letters}
        probs[answer] = 0.7
        ranked = {x: [str(900 + r) for r in range(number % 4)] + ids for x, ids in item.misconceptions.items()}
        predictions[item.id] = Prediction(
            item_id=item.id,
            answer=answer,
            option_probs=probs,
            misconceptions=ranked,
            flips=["B->A"] if number == 4 else [],
            trace_id=f"t-{number}",
        )
    return predictions


def test_reports_from_real_items(tmp_path, eedi_items):
    predictions = hand_made(eedi_items)
    metrics = summarize(eedi_items, predictions, {"dataset": "eedi", "split": "train", "model": "hand"})
    rows = metrics["misconceptions"]["rows"]
    assert rows == sum(len([x for x in it.misconceptions if x != it.answer]) for it in eedi_items)
    # item k puts its gold id at rank k % 4 + 1, so AP = 1 / (k % 4 + 1) on each of its rows
    expected = (
        sum(len([x for x in it.misconceptions if x != it.answer]) / (k % 4 + 1) for k, it in enumerate(eedi_items))
        / rows
    )
    assert metrics["misconceptions"]["map@25"] == pytest.approx(expected)
    assert metrics["accuracy"]["correct"] == 8 and metrics["accuracy"]["labelled"] == 12
    assert [w["item_id"] for w in metrics["worst"]] == [eedi_items[k].id for k in (0, 3, 6, 9)]
    assert sum(g["n"] for g in metrics["by_subject"].values()) == 12
    # every answer has p = 0.7 and no verify ran: one signal, all tied, so chance
    assert set(metrics["confidence"]) == {"answer_prob"} and metrics["confidence"]["answer_prob"]["auroc"] == 0.5

    run_dir = tmp_path / "eedi-hand"
    write_reports(run_dir, metrics)
    saved = json.loads((run_dir / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert saved["misconceptions"]["curve"]["1"] <= saved["misconceptions"]["curve"]["25"]
    html = (run_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5  # subject, construct, letters, MAP@k curve, flips
    assert f"mcqa trace show {run_dir} {eedi_items[0].id}" in html and "trace t-0" in html
    markdown = (run_dir / "report.md").read_text()
    assert "MAP@25 (95% CI)" in markdown and "## Accuracy by subject" in markdown
    assert "## Most confident wrong answers" in markdown
    assert "## Confidence" in markdown and "| answer_prob | 0.500 |" in markdown
    assert "<h2>Confidence</h2>" in html


def test_a_misconception_only_run_has_no_accuracy(tmp_path, eedi_items):
    predictions = {
        k: p.model_copy(update={"answer": None, "option_probs": {}}) for k, p in hand_made(eedi_items).items()
    }
    metrics = summarize(eedi_items, predictions, {"dataset": "eedi", "split": "train", "model": "hand"})
    assert metrics["accuracy"] is None and metrics["position"] is None and metrics["confidence"] is None
    assert metrics["misconceptions"]["map@25"] > 0
    write_reports(tmp_path, metrics)
    assert "answered no questions" in (tmp_path / "report.md").read_text()


def test_an_unlabelled_split_reports_predictions_without_grades(tmp_path, data_root):
    items = load_split("codemmlu_fpt", "test", data_root).items[:5]
    assert all(it.answer is None for it in items)
    predictions = {
        it.id: Prediction(item_id=it.id, answer="A", option_probs={x: 1 / len(it.choices) for x in it.letters})
        for it in items
    }
    metrics = summarize(items, predictions, {"dataset": "codemmlu_fpt", "split": "test", "model": "hand"})
    assert metrics["accuracy"]["labelled"] == 0 and metrics["worst"] == [] and metrics["confidence"] is None
    assert metrics["position"]["predicted_letters"]["A"] == 5 and metrics["position"]["rstd"] is None
    write_reports(tmp_path, metrics)
    assert "n/a: no labelled items" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.html").stat().st_size > 0
