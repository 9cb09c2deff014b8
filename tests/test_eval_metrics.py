"""Run metrics against hand-computed cases: accuracy and its interval, Eedi MAP@25 over every labelled
wrong answer, MAP's MAP@3 on Category:Misconception labels, breakdowns, the flip ledger,
confidence as a predictor of correctness (AUROC, risk-coverage).

The intervals are checked against cases whose percentile-bootstrap interval is known (a resample of a
0/1 sample counts successes binomially), never only by "it contains the estimate": that held for any
interval when the old one was widened to reach the estimate."""

import json
import math

import pytest

from mcqa.eval.metrics import (
    accuracy_summary,
    answers_questions,
    bootstrap_estimate,
    breakdown,
    confidence_summary,
    flip_ledger,
    map_competition_labels,
    map_competition_summary,
    misconception_summary,
    paired_bootstrap_difference,
)
from mcqa.types import Item, Prediction


def item(id_, answer="A", n=4, **kw):
    return Item(id=id_, question=f"q{id_}", choices=[f"c{i}" for i in range(n)], answer=answer, **kw)


def test_accuracy_counts_unanswered_as_wrong_and_apart():
    items = [item("1"), item("2"), item("3"), item("4"), item("5"), item("6", answer=None), item("7")]
    predictions = [
        Prediction(item_id="1", answer="A"),
        Prediction(item_id="2", answer="A", correct=False),  # recomputed
        Prediction(item_id="3", answer="B"),
        Prediction(item_id="4", answer=None),  # abstained
        Prediction(item_id="5", error="RuntimeError: backend down"),
        Prediction(item_id="6", answer="C"),
    ]  # item 7 has no prediction yet: pending, not wrong
    summary = accuracy_summary(items, predictions)
    assert summary["labelled"] == 5 and summary["correct"] == 2
    assert summary["accuracy"] == pytest.approx(2 / 5)
    assert summary["unanswered"] == 2 and summary["errors"] == 1
    assert summary["answered_accuracy"] == pytest.approx(2 / 3)
    # a resample of 2 right in 5 has Binomial(5, 0.4) right: P(0) = 0.078, P(<= 4) = 0.990
    assert (summary["low"], summary["high"]) == (0.0, pytest.approx(0.8))


def test_a_run_that_answers_nothing_is_not_graded():
    assert not answers_questions([Prediction(item_id="1", misconceptions={"B": ["3"]})])
    assert answers_questions({"1": Prediction(item_id="1", answer="A")})


def test_bootstrap_interval_is_seeded_and_about_the_right_width():
    assert bootstrap_estimate([1, 1, 1]).low == 1.0 == bootstrap_estimate([1, 1, 1]).high
    values = [1, 0] * 50
    first, again = bootstrap_estimate(values, seed=3), bootstrap_estimate(values, seed=3)
    assert first == again
    assert first.value == 0.5 and first.low < 0.5 < first.high
    assert 0.15 < first.high - first.low < 0.25  # ~ 2 x 1.96 x sqrt(0.25 / 100) = 0.196
    assert math.isnan(bootstrap_estimate([]).value)


def test_paired_bootstrap_sees_a_small_consistent_gain():
    a = [1, 0] * 50
    b = list(a)
    for i in range(1, 21, 2):  # 10 items go from wrong to right, none the other way
        b[i] = 1
    diff = paired_bootstrap_difference(a, b)
    assert diff.value == pytest.approx(0.1)
    assert diff.excludes(0.0) and diff.low > 0
    same = paired_bootstrap_difference(a, a)
    assert same.value == 0 and not same.excludes(0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_difference([1], [1, 0])


def binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= q."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


def test_bootstrap_of_a_large_bernoulli_sample_is_the_normal_interval():
    n, p = 10_000, 0.3
    estimate = bootstrap_estimate([1] * 3000 + [0] * 7000)
    half = 1.96 * math.sqrt(p * (1 - p) / n)  # 0.00898
    assert estimate.value == pytest.approx(p)
    assert estimate.low == pytest.approx(p - half, abs=0.002)
    assert estimate.high == pytest.approx(p + half, abs=0.002)
    assert estimate.high - estimate.low == pytest.approx(2 * half, abs=0.002)


def test_bootstrap_of_a_constant_is_degenerate_at_it():
    for values, weights in (([1] * 30, None), ([0] * 30, None), ([2.0, 4.0, 6.0, 20.0], [1, 2, 3, 10])):
        estimate = bootstrap_estimate(values, weights)
        assert estimate.low == estimate.high == pytest.approx(estimate.value)
    assert bootstrap_estimate([2.0, 4.0, 6.0, 20.0], [1, 2, 3, 10]).low == 2.0  # every resampled ratio is 2
    same = paired_bootstrap_difference([1, 0, 1, 1, 0] * 10, [1, 0, 1, 1, 0] * 10)
    assert same.value == same.low == same.high == 0.0


def test_bootstrap_of_a_rare_event_stays_in_range_and_is_lopsided():
    # 1 right in 20: a resample has Binomial(20, 0.05) right, P(0) = 0.358, P(<= 2) = 0.925, P(<= 3) = 0.984
    estimate = bootstrap_estimate([1] + [0] * 19)
    assert (estimate.low, estimate.high) == (0.0, pytest.approx(0.15))  # a normal interval: [-0.046, 0.146]
    assert estimate.high - estimate.value > estimate.value - estimate.low


def test_the_interval_is_the_replicates_not_widened_to_the_estimate():
    """With one resample the interval is that resample's mean, a point: the estimate is left out. The
    old interval was stretched to [min(replicate, value), max(replicate, value)] and could not be."""
    values = [0.3, 1.7, 2.2, 4.1, 9.6]
    sides = set()
    for seed in range(6):
        estimate = bootstrap_estimate(values, n_resamples=1, seed=seed)
        assert estimate.low == estimate.high, f"seed {seed}: {estimate}"
        assert estimate.excludes(estimate.value) and min(values) <= estimate.low <= max(values)
        sides.add(estimate.low > estimate.value)
        diff = paired_bootstrap_difference([0] * 5, values, n_resamples=1, seed=seed)
        assert diff.low == diff.high == pytest.approx(estimate.low)  # b - 0: the same resample of b
    assert sides == {True, False}  # replicates fall on both sides of the estimate


def test_paired_bootstrap_of_k_more_right_items_is_binomial():
    """B is right on every item A is right on and on k more: each resample's difference is the share of
    the k fixed items among n draws, Binomial(n, k/n) / n. An unpaired bootstrap would be more than twice
    as wide (both runs' own variances, about +-0.069 here)."""
    n, k = 400, 40
    a = [1, 0] * (n // 2)
    fixed = [i for i, x in enumerate(a) if x == 0][:k]
    b = [1 if i in fixed else x for i, x in enumerate(a)]
    diff = paired_bootstrap_difference(a, b)
    assert diff.value == pytest.approx(k / n)
    low, high = binomial_quantile(n, k / n, 0.025) / n, binomial_quantile(n, k / n, 0.975) / n  # 0.0725, 0.13
    assert diff.low == pytest.approx(low, abs=1.5 / n) and diff.high == pytest.approx(high, abs=1.5 / n)
    assert diff.excludes(0.0)
    reverse = paired_bootstrap_difference(b, a)
    assert reverse.low == pytest.approx(-diff.high) and reverse.high == pytest.approx(-diff.low)


def write_run(folder, correct: list[bool]):
    folder.mkdir()
    (folder / "run.json").write_text("{}")  # no source: compare grades by the predictions' `correct`
    lines = [
        Prediction(item_id=f"{i:04d}", answer="A" if right else "B", correct=right).model_dump_json()
        for i, right in enumerate(correct)
    ]
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_compare_reports_the_paired_interval_of_k_more_right_items(tmp_path):
    from mcqa.eval.compare import compare_runs

    n, k = 400, 40
    a = [i % 2 == 0 for i in range(n)]
    b = [right or i < 2 * k for i, right in enumerate(a)]  # the first k wrong items of A fixed
    run_a, run_b = write_run(tmp_path / "a", a), write_run(tmp_path / "b", b)
    row = compare_runs(run_a, run_b)["metrics"][0]
    assert row["metric"] == "accuracy" and row["shared_items"] == n
    diff = row["difference"]
    assert diff["value"] == pytest.approx(k / n) and row["significant"]
    low, high = binomial_quantile(n, k / n, 0.025) / n, binomial_quantile(n, k / n, 0.975) / n
    assert diff["low"] == pytest.approx(low, abs=1.5 / n) and diff["high"] == pytest.approx(high, abs=1.5 / n)
    assert row["a"]["low"] == pytest.approx(0.5 - 1.96 * math.sqrt(0.25 / n), abs=0.01)  # each run's own
    itself = compare_runs(run_a, run_a)["metrics"][0]
    assert (itself["difference"]["low"], itself["difference"]["high"]) == (0.0, 0.0) and not itself["significant"]
    json.dumps(itself)  # the JSON `mcqa eval compare --json` prints


def test_eedi_map25_scores_every_labelled_wrong_answer():
    items = [
        item("e1", answer="A", misconceptions={"B": ["10"], "C": ["20"], "D": ["30"]}),
        item("e2", answer="B", misconceptions={"A": ["5"], "B": ["99"]}),
    ]  # a label on the right answer is not scored
    predictions = [
        Prediction(item_id="e1", misconceptions={"B": ["10", "11"], "C": ["21", "20"], "D": []}),
        Prediction(item_id="e2", misconceptions={"A": ["1", "2", "5"], "B": ["99"]}),
    ]
    summary = misconception_summary(items, predictions, k=25)
    assert summary["rows"] == 4 and summary["items"] == 2 and summary["rows_ranked"] == 3
    assert summary["map@25"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert summary["recall@25"] == pytest.approx(3 / 4)
    assert summary["curve"][1] == pytest.approx(1 / 4)
    assert summary["curve"][2] == pytest.approx((1 + 1 / 2) / 4)
    # items, not rows, are resampled: e2 twice (p = 1/4) scores 1/3, e1 twice 1.5/3, one of each the value
    assert summary["low"] == pytest.approx(1 / 3) and summary["high"] == pytest.approx(0.5)
    assert misconception_summary([item("x")], [Prediction(item_id="x")]) is None


def map_item(id_, chosen, label, answer="A"):
    return item(id_, answer=answer, chosen=chosen, metadata={"label": label})


def test_map_competition_labels_and_map3():
    items = [
        map_item("m1", "B", "False_Misconception:Incomplete"),
        map_item("m2", "A", "True_Correct:NA"),
        map_item("m3", "C", "False_Neither:NA"),
        map_item("m4", "D", "False_Neither:NA"),
    ]
    predictions = {
        "m1": Prediction(item_id="m1", answer="A", misconceptions={"B": ["WNB", "Incomplete"]}),
        "m2": Prediction(item_id="m2", answer="A"),
        "m3": Prediction(
            item_id="m3", misconceptions={"C": ["False_Misconception:X", "False_Neither:NA", "False_Correct:NA"]}
        ),
        "m4": Prediction(item_id="m4", answer="D"),  # the solver thinks the student was right
    }
    assert map_competition_labels(items[0], predictions["m1"]) == [
        "False_Misconception:WNB",
        "False_Misconception:Incomplete",
        "False_Neither:NA",
    ]
    assert map_competition_labels(items[1], predictions["m2"]) == ["True_Correct:NA", "True_Neither:NA"]
    assert map_competition_labels(items[3], predictions["m4"])[0] == "True_Correct:NA"
    # no answer from the solver (misconception-only run): the item's known answer sets True/False
    assert map_competition_labels(items[0], Prediction(item_id="m1"))[0] == "False_Neither:NA"
    summary = map_competition_summary(items, predictions)
    assert summary["rows"] == 4
    assert summary["map@3"] == pytest.approx((1 / 2 + 1 + 1 / 2 + 0) / 4)


def test_breakdown_by_subject_largest_first():
    items = [item("1", subject="algebra"), item("2", subject="algebra"), item("3", subject="geometry"), item("4")]
    predictions = [Prediction(item_id=i, answer=a) for i, a in (("1", "A"), ("2", "B"), ("3", "A"), ("4", "A"))]
    groups = breakdown(items, predictions, "subject")
    assert list(groups) == ["algebra", "geometry"]
    assert groups["algebra"]["n"] == 2 and groups["algebra"]["accuracy"] == 0.5
    assert groups["geometry"]["accuracy"] == 1.0


def test_flip_ledger_classes_each_flip_by_the_gold_letter():
    items = [item("1"), item("2"), item("3"), item("4", answer=None), item("5")]
    predictions = [
        Prediction(item_id="1", answer="A", flips=["B->A"]),
        Prediction(item_id="2", answer="C", flips=["A->C"]),
        Prediction(item_id="3", answer="D", flips=["B->C", "C->D"]),
        Prediction(item_id="4", flips=["A->B"]),
        Prediction(item_id="5", answer="A"),
    ]
    ledger = flip_ledger(items, predictions)
    assert ledger == {
        "wrong_to_right": 1,
        "right_to_wrong": 1,
        "wrong_to_wrong": 2,
        "unlabelled": 1,
        "flips": 5,
        "items_flipped": 4,
        "net": 0,
        "by_step": {
            "reconsider": {"wrong_to_right": 1, "right_to_wrong": 1, "wrong_to_wrong": 2, "unlabelled": 1, "net": 0}
        },
    }


def test_flip_ledger_splits_debias_flips_from_reconsider_flips():
    items = [item("1"), item("2")]
    predictions = [
        Prediction(item_id="1", answer="A", flips=["pride: B->A", "A->C"]),
        Prediction(item_id="2", answer="C", flips=["permute: B->C"]),
    ]
    ledger = flip_ledger(items, predictions)
    assert ledger["flips"] == 3 and ledger["net"] == 0
    assert ledger["by_step"]["pride"]["wrong_to_right"] == 1
    assert ledger["by_step"]["reconsider"]["right_to_wrong"] == 1
    assert ledger["by_step"]["permute"]["wrong_to_wrong"] == 1


def confident(scores, verification=None):
    """Items answered A or B (gold A) with the answer's probability (or P(TRUE)) taken from `scores`."""
    items, predictions = [], []
    for i, (score, right) in enumerate(scores):
        items.append(item(str(i)))
        answer = "A" if right else "B"
        predictions.append(
            Prediction(
                item_id=str(i),
                answer=answer,
                option_probs={answer: score},
                verification=None if verification is None else verification[i],
            )
        )
    return items, predictions


def test_confidence_a_perfect_signal_ranks_every_right_answer_first():
    items, predictions = confident(
        [(0.75, True), (0.25, False), (0.625, True), (0.375, False)], verification=[0.25, 0.75, 0.375, 0.625]
    )  # P(TRUE) backwards
    items.append(item("x"))
    predictions.append(Prediction(item_id="x", answer="A", option_probs={"A": 1.0}, error="boom"))  # not graded
    summary = confidence_summary(items, predictions)
    assert summary["answer_prob"]["auroc"] == 1.0 and summary["answer_prob"]["n"] == 4
    assert summary["answer_prob"]["accuracy_at_coverage"] == {"0.5": 1.0, "0.8": 0.5, "1.0": 0.5}  # ceil(3.2) = all 4
    assert summary["verification"]["auroc"] == 0.0
    assert summary["verification"]["accuracy_at_coverage"]["0.5"] == 0.0
    assert summary["both"]["auroc"] == pytest.approx(0.5)  # the two cancel: every mean is 0.5, all tied


def test_confidence_ties_count_half_and_one_class_has_no_auroc():
    items, predictions = confident([(0.7, True), (0.7, False), (0.9, True), (0.1, False)])
    # pairs (right, wrong): (0.7,0.7) tie = 1/2, (0.7,0.1) 1, (0.9,0.7) 1, (0.9,0.1) 1 -> 3.5 / 4
    assert confidence_summary(items, predictions)["answer_prob"]["auroc"] == pytest.approx(0.875)
    items, predictions = confident([(0.9, True), (0.4, True)])
    summary = confidence_summary(items, predictions)
    assert summary["answer_prob"]["auroc"] is None and summary["answer_prob"]["accuracy_at_coverage"]["1.0"] == 1.0


def test_confidence_without_verify_has_no_verification_row():
    items, predictions = confident([(0.9, True), (0.2, False)])
    summary = confidence_summary(items, predictions)
    assert set(summary) == {"answer_prob"}
    assert (
        confidence_summary([item("1", answer=None)], [Prediction(item_id="1", answer="A", option_probs={"A": 1.0})])
        is None
    )
