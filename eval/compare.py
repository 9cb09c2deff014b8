"""Two runs side by side: is B better than A, or is the difference inside the noise?

Only the items both runs predicted are compared, and the bootstrap resamples those items for both
runs at once (a paired bootstrap): the items' own difficulty, which both runs share, cancels out,
so the interval of the difference is much narrower than the two runs' own intervals suggest.
A difference is called real when its 95% interval leaves out zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcqa.eval.metrics import (
    answers_questions,
    average_precision_at_k,
    bootstrap_estimate,
    eedi_rows,
    is_correct,
    map_competition_labels,
    paired_bootstrap_difference,
)
from mcqa.eval.runner import PredictionLog, RunDir, RunError
from mcqa.types import Item, Prediction


def load_run(path: Path) -> tuple[dict, dict[str, Prediction]]:
    """(run.json, predictions by id) of a run folder, read without touching it."""
    run = RunDir(path)
    if not run.predictions.exists():
        raise RunError(f"{path} has no predictions.jsonl: not a run folder")
    return run.read_meta(), PredictionLog(run.predictions, repair=False).done


def load_run_items(meta: dict, data_root: Path | None = None) -> list[Item] | None:
    """The items a run was made on, from its run.json; None when they cannot be read here (the
    comparison then falls back to the predictions' own `correct` field, accuracy only)."""
    from mcqa.datasets import Columns, DatasetError, load_file
    from mcqa.rag.splits import load_items

    source = meta.get("source") or {}
    try:
        if source.get("file"):
            return load_file(source["file"], Columns.parse(source.get("columns"))).items
        if source.get("dataset") and source.get("split"):
            return load_items(source["dataset"], source["split"], data_root)
    except (DatasetError, ValueError, OSError):
        return None
    return None


def _per_item_scores(items: list[Item] | None, predictions: dict[str, Prediction]) -> dict[str, dict[str, tuple]]:
    """metric -> item id -> (score, weight): what the paired bootstrap resamples.

    Accuracy only for a run that answers questions (a misconception-only run has none to compare);
    without the items, accuracy comes from the predictions' own `correct` field and nothing else.
    """
    answering = answers_questions(predictions)
    if items is None:
        return (
            {"accuracy": {p.item_id: (float(p.correct), 1.0) for p in predictions.values() if p.correct is not None}}
            if answering
            else {}
        )
    scores: dict[str, dict[str, tuple]] = {}
    if answering:
        by_id = {it.id: it for it in items}
        scores["accuracy"] = {
            item_id: (float(bool(is_correct(by_id[item_id], p))), 1.0)  # labelled: never None
            for item_id, p in predictions.items()
            if item_id in by_id and by_id[item_id].answer is not None
        }
    rows = eedi_rows(items, predictions)
    if any(ranked for _, _, ranked, _ in rows):
        eedi: dict[str, tuple] = {}
        for item_id, _, ranked, relevant in rows:
            total, count = eedi.get(item_id, (0.0, 0.0))
            eedi[item_id] = (total + average_precision_at_k(ranked, relevant, 25), count + 1.0)
        scores["map@25"] = eedi
    labelled = [it for it in items if it.metadata.get("label") and it.id in predictions]
    if labelled:
        scores["map@3"] = {
            it.id: (
                average_precision_at_k(map_competition_labels(it, predictions[it.id]), {it.metadata["label"]}, 3),
                1.0,
            )
            for it in labelled
        }
    return scores


def _split_by_tool(scores: dict[str, dict[str, tuple]], *runs: dict[str, Prediction]) -> None:
    """Accuracy again on the items where a tool named or ruled out a choice in either run, and on the rest: a tool's
    gain shows on its own subset, and the rest shows what it cost elsewhere (nothing, if it is right)."""
    named = {
        i for preds in runs for i, p in preds.items() if p.tool and (p.tool.get("letter") or p.tool.get("ruled_out"))
    }
    if not named or "accuracy" not in scores:
        return
    accuracy = scores["accuracy"]
    scores["accuracy (tool named or ruled out a choice)"] = {i: v for i, v in accuracy.items() if i in named}
    scores["accuracy (no tool)"] = {i: v for i, v in accuracy.items() if i not in named}


def compare_runs(path_a: Path, path_b: Path, data_root: Path | None = None, seed: int = 0) -> dict:
    """Each metric on the shared items: A and B with their own intervals, B - A with its paired one."""
    meta_a, preds_a = load_run(path_a)
    meta_b, preds_b = load_run(path_b)
    items_a = load_run_items(meta_a, data_root)
    items_b = items_a if meta_b.get("source") == meta_a.get("source") else load_run_items(meta_b, data_root)
    scores_a, scores_b = _per_item_scores(items_a, preds_a), _per_item_scores(items_b, preds_b)
    for scores in (scores_a, scores_b):
        _split_by_tool(scores, preds_a, preds_b)
    rows = []
    for metric in [m for m in scores_a if m in scores_b]:
        shared = sorted(set(scores_a[metric]) & set(scores_b[metric]))
        if not shared:
            continue
        a = np.array([scores_a[metric][i] for i in shared])
        b = np.array([scores_b[metric][i] for i in shared])
        est_a = bootstrap_estimate(a[:, 0], a[:, 1], seed=seed)
        est_b = bootstrap_estimate(b[:, 0], b[:, 1], seed=seed)
        diff = paired_bootstrap_difference(a[:, 0], b[:, 0], a[:, 1], b[:, 1], seed=seed)
        rows.append(
            {
                "metric": metric,
                "shared_items": len(shared),
                "a": est_a.as_dict(),
                "b": est_b.as_dict(),
                "difference": diff.as_dict(),
                "significant": bool(diff.excludes(0.0)),
                "only_a": len(set(scores_a[metric]) - set(shared)),
                "only_b": len(set(scores_b[metric]) - set(shared)),
            }
        )
    return {
        "a": str(path_a),
        "b": str(path_b),
        "source_a": meta_a.get("source"),
        "source_b": meta_b.get("source"),
        "items_loaded": items_a is not None and items_b is not None,
        "metrics": rows,
    }
