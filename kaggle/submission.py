"""Predictions -> `submission.csv`, one writer per competition, every expected row always present.

The rows come from the test file (`expected_rows`), not from the predictions: an item the adapter
skipped or the solver failed on still gets a line, with a fallback value that is valid in format
(and says so in the count the runner prints). Lists are padded to the exact length the competition
scores (25 for Eedi, 3 for MAP) and never repeat a label.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mcqa.eval.metrics import dedupe
from mcqa.kaggle.formats import Task, expected_rows
from mcqa.types import Item, Prediction

# MAP's no-misconception labels, most frequent first in its train file, used to fill a short list.
MAP_FILL_TRUE = ("True_Correct:NA", "True_Neither:NA")
MAP_FILL_FALSE = ("False_Neither:NA", "False_Correct:NA")


def _pad(ranked: list[str], fill: list[str], k: int) -> list[str]:
    return dedupe([*ranked, *fill])[:k]


def map_labels(
    item: Item | None, prediction: Prediction | None, fill_misconceptions: list[str], k: int = 3
) -> list[str]:
    """Exactly k `Category:Misconception` labels for one MAP response, best first.

    The True_/False_ half says whether the student's choice is the right answer (the gold answer the
    adapter derives from train labels, else the solver's own answer); the ranked misconceptions for
    the chosen letter become `{truth}_Misconception:{id}`, padded with the no-misconception labels.
    With no answer known at all, both halves are hedged: True_Correct first, then misconceptions.
    """
    from mcqa.eval.metrics import map_competition_labels

    ranked = map_competition_labels(item, prediction, k) if item is not None and prediction is not None else []
    if not ranked:
        chosen = (item.chosen if item else None) or ""
        ids = list(prediction.misconceptions.get(chosen, [])) if prediction else []
        ids = ids or fill_misconceptions
        ranked = ["True_Correct:NA", *(f"False_Misconception:{m}" for m in ids[:1]), "False_Neither:NA"]
    truth = ranked[0].split("_", 1)[0]
    extra_ids = [f"{truth}_Misconception:{m}" for m in fill_misconceptions]
    fill = [*(MAP_FILL_TRUE if truth == "True" else MAP_FILL_FALSE), *extra_ids]
    return _pad(ranked, fill, k)


def submission_rows(
    task: Task, test_file: Path, items: list[Item], predictions: list[Prediction], fill: list[str] | None = None
) -> tuple[list[tuple[str, str]], int]:
    """(rows in test-file order, how many rows got a fallback value).

    `fill`: misconception ids in a sensible default order (the catalogue's most frequent first) used
    to pad short lists and for rows without a prediction.
    """
    fill = list(fill or [])
    by_id = {p.item_id: p for p in predictions if p.error is None}
    items_by_id = {it.id: it for it in items}
    rows, fallbacks = [], 0
    for row_id in expected_rows(task, test_file):
        if task.name == "eedi":
            question, letter = row_id.rsplit("_", 1)
            prediction = by_id.get(question)
            ranked = list(prediction.misconceptions.get(letter, [])) if prediction else []
            fallbacks += not ranked
            labels = _pad(ranked, fill, task.per_row)
            if len(labels) < task.per_row:
                raise ValueError(
                    f"{row_id}: only {len(labels)} misconception ids to rank, {task.per_row} needed "
                    f"(pass the catalogue ids as fill)"
                )
            rows.append((row_id, " ".join(labels)))
        elif task.name == "codemmlu":
            prediction = by_id.get(row_id)
            answer = prediction.answer if prediction and prediction.answer else None
            fallbacks += answer is None
            rows.append((row_id, answer or "A"))
        else:
            item, prediction = items_by_id.get(row_id), by_id.get(row_id)
            fallbacks += prediction is None
            rows.append((row_id, " ".join(map_labels(item, prediction, fill, task.per_row))))
    return rows, fallbacks


def write_submission(path: Path, task: Task, rows: list[tuple[str, str]]) -> Path:
    """Write the CSV with the competition's header (plain `\\n` line ends, as Kaggle's samples).

    Written beside and then moved over `path`, so a kill mid-write leaves the previous file whole
    (the Kaggle run writes an all-fallback submission first, then the real one over it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(task.columns)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
