"""Ranking metrics exactly as the Kaggle competitions define them.

Eedi (MAP@25) and MAP (MAP@3) score each row by the precision at the rank of its one correct label:
AP@k = sum over ranks i <= k of P(i) * rel(i) / min(|relevant|, k), which for one relevant label is
1/rank if it is in the top k, else 0. A repeated label scores only at its first rank but keeps its
place in the ranking (a wasted slot), as the competitions' `apk` code does.

Below the ranking metrics: what a run is scored by (accuracy with a bootstrap interval, per-subject
breakdowns, Eedi's MAP@25 over every labelled wrong answer, MAP's MAP@3 over `Category:Misconception`
labels, the verify/reconsider flip ledger, how well confidence predicts correctness), each from a
split's items and a run's predictions.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mcqa.types import Item, Prediction


def dedupe(ranked: Sequence) -> list:
    """The list with repeats dropped, first occurrence kept (a repeated label wastes its slot in Kaggle's apk)."""
    seen, out = set(), []
    for label in ranked:
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def average_precision_at_k(ranked: Sequence, relevant: Iterable, k: int) -> float:
    """AP@k of one ranking against a set of relevant labels (empty set -> 0)."""
    relevant = set(relevant)
    if not relevant:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for rank, label in enumerate(list(ranked)[:k], start=1):
        if label in relevant and label not in seen:
            hits += 1
            total += hits / rank
        seen.add(label)
    return total / min(len(relevant), k)


def map_at_k(rankings: Sequence[Sequence], relevants: Sequence[Iterable], k: int = 25) -> float:
    """Mean AP@k over rows; `rankings[i]` is scored against `relevants[i]`."""
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} label sets")
    if not rankings:
        return float("nan")
    return sum(average_precision_at_k(r, rel, k) for r, rel in zip(rankings, relevants, strict=True)) / len(rankings)


def recall_at_k(rankings: Sequence[Sequence], relevants: Sequence[Iterable], k: int = 25) -> float:
    """Mean over rows of the share of relevant labels found in the top k."""
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} label sets")
    scores = []
    for ranked, relevant in zip(rankings, relevants, strict=True):
        relevant = set(relevant)
        if relevant:
            scores.append(len(relevant & set(dedupe(ranked)[:k])) / len(relevant))
    return sum(scores) / len(scores) if scores else float("nan")


# --- per-item scores of a run, and their intervals --------------------------------------------------
# Everything below joins a run's predictions to its items by id. Correctness is recomputed from the
# item's gold letter (not trusted from Prediction.correct), so a solver that forgets to set it, or a
# permuted prediction mapped back, is graded the same way as everything else.

N_RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric with its bootstrap interval: `value` over `n` units, [low, high] at `LEVEL`.

    The interval is the percentile bootstrap's: the (1 - level) / 2 and (1 + level) / 2 quantiles of
    the replicates, as they fall. It is not widened to reach `value`, so on a tiny or lopsided sample
    (or with few resamples) it may leave the estimate out; a vector of one constant gives [c, c].
    """

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def excludes(self, value: float) -> bool:
        return not (self.low <= value <= self.high)


def _resampled_ratios(columns: list[tuple[np.ndarray, np.ndarray]], n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of sum(values)/sum(weights) for each (values, weights) column.

    All columns are resampled with the same unit indices, which is what makes a difference between
    two columns a paired bootstrap. A unit is an item; its value may be a sum over several rows (an
    Eedi item has up to three labelled wrong answers) with the row count as weight, so the items,
    not the rows, are what gets resampled.
    """
    n = len(columns[0][0])
    rng = np.random.default_rng(seed)
    out = np.empty((len(columns), n_resamples))
    chunk = max(1, min(n_resamples, 4_000_000 // max(n, 1)))  # bound memory on large splits
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        for c, (values, weights) in enumerate(columns):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[c, start : start + len(idx)] = values[idx].sum(axis=1) / weights[idx].sum(axis=1)
    return out


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval: the central `level` of the replicates (NaN ones, from a resample whose
    weights sum to 0, dropped)."""
    replicates = replicates[~np.isnan(replicates)]
    if not len(replicates):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_estimate(
    values, weights=None, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Estimate:
    """sum(values)/sum(weights) (a mean when weights are 1) with a percentile bootstrap interval.

    Units (items) are resampled with replacement `n_resamples` times; [low, high] are the quantiles of
    the resampled ratios (see `Estimate`). Seeded, so the same run always reports the same interval.
    """
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    if not len(values) or weights.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), len(values))
    value = float(values.sum() / weights.sum())
    low, high = _percentiles(_resampled_ratios([(values, weights)], n_resamples, seed)[0], level)
    return Estimate(value, low, high, len(values))


def paired_bootstrap_difference(
    a, b, weights_a=None, weights_b=None, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Estimate:
    """ratio(b) - ratio(a) over the same units, with a paired percentile bootstrap interval: each
    resample draws the same units for both runs and takes the difference of their ratios, so the
    between-item variance that both runs share cancels out; [low, high] are the quantiles of those
    differences (see `Estimate`)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    weights_a = np.ones_like(a) if weights_a is None else np.asarray(weights_a, dtype=float)
    weights_b = np.ones_like(b) if weights_b is None else np.asarray(weights_b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    if not len(a) or weights_a.sum() == 0 or weights_b.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), len(a))
    value = float(b.sum() / weights_b.sum() - a.sum() / weights_a.sum())
    reps = _resampled_ratios([(a, weights_a), (b, weights_b)], n_resamples, seed)
    low, high = _percentiles(reps[1] - reps[0], level)
    return Estimate(value, low, high, len(a))


def paired(items: list[Item], predictions) -> list[tuple[Item, Prediction]]:
    """(item, prediction) for every item that has a prediction, in the items' order."""
    by_id = predictions if isinstance(predictions, dict) else {p.item_id: p for p in predictions}
    return [(item, by_id[item.id]) for item in items if item.id in by_id]


def is_correct(item: Item, prediction: Prediction) -> bool | None:
    """None for an unlabelled item; an unanswered item (no letter, or an error) is wrong."""
    if item.answer is None:
        return None
    return prediction.answer is not None and prediction.error is None and prediction.answer == item.answer


def answers_questions(predictions) -> bool:
    """Whether a run answered questions at all. A misconception-only agent run (Eedi, MAP: the right
    answer is given) leaves every answer empty; grading it would report 0% accuracy, not "n/a"."""
    values = predictions.values() if isinstance(predictions, dict) else predictions
    return any(p.answer is not None for p in values)


def accuracy_summary(items: list[Item], predictions, seed: int = 0) -> dict:
    """Accuracy with its bootstrap interval; unanswered items count as wrong and are also counted apart.

    `answered_accuracy` is the accuracy over the items that got an answer, so a run whose backend
    failed on some batches can be told apart from a run that answered badly.
    """
    pairs = [(it, p) for it, p in paired(items, predictions) if it.answer is not None]
    graded = np.array([is_correct(it, p) for it, p in pairs], dtype=float)
    answered = np.array([p.answer is not None and p.error is None for _, p in pairs], dtype=bool)
    estimate = bootstrap_estimate(graded, seed=seed)
    return (
        {
            "accuracy": estimate.value,
            "low": estimate.low,
            "high": estimate.high,
            "level": LEVEL,
            "labelled": len(pairs),
            "correct": int(graded.sum()),
            "unanswered": int((~answered).sum()),
            "errors": sum(p.error is not None for _, p in pairs),
            "answered_accuracy": float(graded[answered].mean()) if answered.any() else None,
        }
        if pairs
        else {"accuracy": None, "labelled": 0, "correct": 0, "unanswered": 0, "errors": 0}
    )


def breakdown(items: list[Item], predictions, field: str, seed: int = 0) -> dict[str, dict]:
    """Accuracy per value of an item field ('subject', 'construct'), largest groups first."""
    groups: dict[str, list[float]] = defaultdict(list)
    for item, prediction in paired(items, predictions):
        key = getattr(item, field)
        if key is not None and item.answer is not None:
            groups[key].append(float(is_correct(item, prediction)))
    out = {}
    for key, values in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        estimate = bootstrap_estimate(values, seed=seed, n_resamples=500)
        out[key] = {"n": estimate.n, "accuracy": estimate.value, "low": estimate.low, "high": estimate.high}
    return out


# --- misconceptions ------------------------------------------------------------------------------


def eedi_rows(items: list[Item], predictions) -> list[tuple[str, str, list[str], set[str]]]:
    """(item id, wrong letter, ranked ids, relevant ids): one row per labelled wrong answer.

    Eedi scores every QuestionId_Answer pair whose distractor carries a misconception label, so an
    item contributes one row per labelled wrong letter; a letter the solver gave no ranking for
    scores 0. Items with a MAP-style `label` in their metadata are scored by `map_competition_labels`.
    """
    rows = []
    for item, prediction in paired(items, predictions):
        if "label" in item.metadata:
            continue
        for letter_, relevant in sorted(item.misconceptions.items()):
            if letter_ != item.answer and relevant:
                rows.append((item.id, letter_, list(prediction.misconceptions.get(letter_, [])), set(relevant)))
    return rows


def _per_item(rows, score) -> tuple[np.ndarray, np.ndarray]:
    """Row scores summed per item (values) and row counts (weights), for the item-level bootstrap."""
    sums: dict[str, float] = defaultdict(float)
    counts: Counter = Counter()
    for row in rows:
        sums[row[0]] += score(row)
        counts[row[0]] += 1
    ids = list(counts)
    return np.array([sums[i] for i in ids]), np.array([counts[i] for i in ids], dtype=float)


def misconception_summary(items: list[Item], predictions, k: int = 25, seed: int = 0) -> dict | None:
    """Eedi's MAP@k and Recall@k over every labelled wrong answer, MAP@k's interval, and the MAP@j
    curve for j = 1..k (how much a longer candidate list buys). None when nothing is labelled."""
    rows = eedi_rows(items, predictions)
    if not rows:
        return None
    rankings, relevants = [r[2] for r in rows], [r[3] for r in rows]
    values, weights = _per_item(rows, lambda r: average_precision_at_k(r[2], r[3], k))
    estimate = bootstrap_estimate(values, weights, seed=seed)
    return {
        f"map@{k}": map_at_k(rankings, relevants, k),
        "low": estimate.low,
        "high": estimate.high,
        f"recall@{k}": recall_at_k(rankings, relevants, k),
        "rows": len(rows),
        "items": len(values),
        "rows_ranked": sum(bool(r) for r in rankings),
        "curve": {j: map_at_k(rankings, relevants, j) for j in range(1, k + 1)},
    }


def map_competition_labels(item: Item, prediction: Prediction, k: int = 3) -> list[str]:
    """The `Category:Misconception` labels a prediction ranks for a MAP response, best first.

    A solver that already speaks MAP's labels puts them (with the colon) under the student's chosen
    letter and they are used as they are. Otherwise they are built: the True_/False_ part says
    whether the solver's own answer agrees with the student's choice, and its ranked misconception
    ids for the chosen letter become `False_Misconception:<id>` (or `True_...`), padded with the
    no-misconception labels in the order of their frequency in MAP's train file (True: Correct
    first; False: Neither last).
    """
    ranked = list(prediction.misconceptions.get(item.chosen or "", []))
    if ranked and all(":" in label for label in ranked):
        return dedupe(ranked)[:k]
    if item.chosen is None or (prediction.answer or item.answer) is None:
        return []
    truth = "True" if (prediction.answer or item.answer) == item.chosen else "False"
    labels = [f"{truth}_Misconception:{m}" for m in ranked]
    labels = (
        [f"{truth}_Correct:NA"] + labels + [f"{truth}_Neither:NA"]
        if truth == "True"
        else labels + [f"{truth}_Neither:NA", f"{truth}_Correct:NA"]
    )
    return dedupe(labels)[:k]


def map_competition_summary(items: list[Item], predictions, k: int = 3, seed: int = 0) -> dict | None:
    """MAP@3 of the MAP competition: one row per student response, scored against its one label."""
    rows = [
        (item.id, map_competition_labels(item, prediction, k), {item.metadata["label"]})
        for item, prediction in paired(items, predictions)
        if item.metadata.get("label")
    ]
    if not rows:
        return None
    scores = [average_precision_at_k(ranked, relevant, k) for _, ranked, relevant in rows]
    estimate = bootstrap_estimate(scores, seed=seed)
    return {f"map@{k}": estimate.value, "low": estimate.low, "high": estimate.high, "rows": len(rows)}


# --- the verify/reconsider ledger ------------------------------------------------------------------


def flip_ledger(items: list[Item], predictions) -> dict:
    """How the agent's steps changed answers, from Prediction.flips ("B->C" from reconsider,
    "permute: B->C" / "pride: B->C" from the debiasing of the answer node).

    Each flip is classed by the gold letter: wrong_to_right (a fix), right_to_wrong (a harm),
    wrong_to_wrong, or unlabelled. `net` is fixes minus harms: what the steps bought in accuracy;
    `by_step` splits the same counts by the step that flipped.
    """
    classes = ("wrong_to_right", "right_to_wrong", "wrong_to_wrong", "unlabelled")
    ledger = Counter({name: 0 for name in classes})
    by_step: dict[str, Counter] = defaultdict(lambda: Counter({name: 0 for name in classes}))
    items_flipped = 0
    for item, prediction in paired(items, predictions):
        if prediction.flips:
            items_flipped += 1
        for flip in prediction.flips:
            step, _, move = flip.rpartition(": ")
            before, _, after = move.partition("->")
            if item.answer is None or not after:
                kind = "unlabelled"
            elif before.strip() == item.answer:
                kind = "right_to_wrong"
            elif after.strip() == item.answer:
                kind = "wrong_to_right"
            else:
                kind = "wrong_to_wrong"
            ledger[kind] += 1
            by_step[step or "reconsider"][kind] += 1
    return {
        **ledger,
        "flips": sum(ledger.values()),
        "items_flipped": items_flipped,
        "net": ledger["wrong_to_right"] - ledger["right_to_wrong"],
        "by_step": {
            step: {**counts, "net": counts["wrong_to_right"] - counts["right_to_wrong"]}
            for step, counts in sorted(by_step.items())
        },
    }


def tools_summary(items: list[Item], predictions, seed: int = 0) -> dict | None:
    """What the tools did, per tool: items seen, programs run, statuses, skip reasons (counted), how
    often a tool named a choice and how often that choice was right, how often it ruled choices out
    (and the gold one among them), and the verifier's AUROC: how well "the tool agrees with the first
    answer" tells right first answers from wrong ones.

    Accuracy is reported apart on the items where a tool named or ruled out a choice (`tool_named`)
    and on the rest, so a gain
    on the tool's subset is not hidden in (or inflated by) the whole split. None when no tool ran.
    """
    rows = [(item, p) for item, p in paired(items, predictions) if p.tool]
    if not rows:
        return None
    out: dict = {}
    for tool in sorted({p.tool["tool"] for _, p in rows}):
        mine = [(it, p) for it, p in rows if p.tool["tool"] == tool]
        named = [(it, p) for it, p in mine if p.tool.get("letter")]
        graded = [(it, p) for it, p in named if it.answer is not None]
        ruled = [(it, p) for it, p in mine if p.tool.get("ruled_out") and it.answer is not None]
        spoke = {it.id: (it, p) for it, p in [*graded, *ruled]}.values()
        checked = [(it, p) for it, p in spoke if p.tool.get("checked")]
        verdicts = np.array([float(bool(p.tool.get("agrees"))) for _, p in checked])
        first_right = np.array([p.tool["checked"] == it.answer for it, p in checked], dtype=bool)
        out[tool] = {
            "items": len(mine),
            "skipped": dict(Counter(p.tool.get("reason") or "?" for _, p in mine if p.tool["status"] == "skipped")),
            "ran": sum(p.tool["status"] not in ("skipped", "no program") for _, p in mine),
            "status": dict(Counter(p.tool["status"] for _, p in mine)),
            "named_a_choice": len(named),
            "tool_accuracy": (sum(p.tool["letter"] == it.answer for it, p in graded) / len(graded)) if graded else None,
            "ruled_out_choices": len(ruled),  # items where the tool ruled choices out (one survivor or more)
            "gold_ruled_out": sum(it.answer in p.tool["ruled_out"] for it, p in ruled),
            "agreement": float(verdicts.mean()) if len(verdicts) else None,
            "verifier_auroc": _auroc(verdicts, first_right) if len(verdicts) else None,
            "seconds": round(float(sum(p.tool.get("seconds") or 0.0 for _, p in mine)), 3),
        }
    named_ids = {it.id for it, p in rows if p.tool.get("letter") or p.tool.get("ruled_out")}
    for subset, keep in (("tool_named", True), ("no_tool", False)):
        chosen = [it for it in items if (it.id in named_ids) == keep]
        out[f"accuracy_{subset}"] = accuracy_summary(chosen, predictions, seed=seed) if chosen else None
    return out


# --- confidence as a predictor of correctness -------------------------------------------------------

COVERAGES = ("0.5", "0.8", "1.0")


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Rank-based AUROC (Mann-Whitney U over n_pos * n_neg), tied scores counted half; None for one class."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confidence_summary(items: list[Item], predictions) -> dict | None:
    """How well each confidence signal tells right answers from wrong ones, per signal present.

    The issue asks whether verify's P(TRUE) could gate reconsider (send only low-confidence answers
    back): that only works if the signal ranks wrong answers below right ones. AUROC says how often
    it does (0.5: no better than chance, so it cannot gate); accuracy at coverage c is the accuracy of
    the ceil(c * n) most confident items, i.e. what abstaining on the rest would buy. Signals:
    `verification` (P(TRUE), absent when verify is off), `answer_prob` (the option probability of the
    final answer) and `both` (their mean, where an item has both). Graded items only: a gold letter
    and no backend error. None when no signal is present on any of them.
    """
    signals: dict[str, list[tuple[float, bool]]] = {"verification": [], "answer_prob": [], "both": []}
    for item, prediction in paired(items, predictions):
        if item.answer is None or prediction.error is not None:
            continue
        correct = bool(is_correct(item, prediction))
        verification = prediction.verification
        answer_prob = prediction.option_probs.get(prediction.answer) if prediction.answer else None
        for name, score in (
            ("verification", verification),
            ("answer_prob", answer_prob),
            ("both", None if verification is None or answer_prob is None else (verification + answer_prob) / 2),
        ):
            if score is not None:
                signals[name].append((float(score), correct))
    out = {}
    for name, rows in signals.items():
        if not rows:
            continue
        scores = np.array([s for s, _ in rows])
        labels = np.array([c for _, c in rows], dtype=bool)
        ranked = labels[np.argsort(-scores, kind="stable")]  # most confident first; ties keep item order
        out[name] = {
            "n": len(rows),
            "correct": int(labels.sum()),
            "auroc": _auroc(scores, labels),
            "accuracy_at_coverage": {c: float(ranked[: math.ceil(float(c) * len(rows))].mean()) for c in COVERAGES},
        }
    return out or None
