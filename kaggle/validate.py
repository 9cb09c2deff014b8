"""Check a submission.csv before Kaggle does: header, row set, id format, labels per row.

Every problem is one line naming the row; the first few of each kind are listed and the rest
counted, so a wholesale mistake (a wrong column, a missing task) reads as one clear message.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from mcqa.kaggle.formats import EEDI_ID, Task, check_value, expected_rows

SHOW = 5  # problems listed per kind


def read_submission(path: Path) -> tuple[list[str], list[list[str]]]:
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        return header, [row for row in reader if row]


def validate(task: Task, submission: Path, test_file: Path, sample: Path | None = None) -> list[str]:
    """Every problem found, as human-readable lines; an empty list means the file is valid."""
    problems: list[str] = []
    kinds: dict[str, list[str]] = defaultdict(list)
    header, rows = read_submission(submission)
    expected_header = list(task.columns)
    if sample is not None:
        sample_header, sample_rows = read_submission(sample)
        if sample_header != expected_header:
            problems.append(
                f"the sample submission's header {sample_header} is not {expected_header}: wrong --task or sample file?"
            )
    if header != expected_header:
        problems.append(f"header is {header}, expected {expected_header}")
        return problems
    expected = expected_rows(task, test_file)
    if sample is not None:
        sample_ids = {r[0] for r in sample_rows}
        if sample_ids != set(expected):
            problems.append(
                f"the sample submission has {len(sample_ids)} row id(s) and the test file implies "
                f"{len(expected)} ({len(sample_ids - set(expected))} only in the sample, "
                f"{len(set(expected) - sample_ids)} only in the test file): wrong test file?"
            )
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        if len(row) != 2:
            kinds["columns"].append(f"line {number}: {len(row)} field(s), expected 2")
            continue
        row_id, value = row[0], row[1]
        if task.name == "eedi" and not EEDI_ID.match(row_id):
            kinds["id format"].append(f"line {number}: id {row_id!r} is not QuestionId_Letter (e.g. 1869_B)")
            continue
        if row_id in seen:
            kinds["duplicate"].append(f"line {number}: {row_id} appears more than once")
            continue
        seen.add(row_id)
        if row_id not in expected:
            kinds["unexpected"].append(f"line {number}: {row_id} is not a row of {Path(test_file).name}")
            continue
        if (problem := check_value(task, row_id, value, expected[row_id])) is not None:
            kinds["value"].append(f"line {number} ({row_id}): {problem}")
    missing = [row_id for row_id in expected if row_id not in seen]
    if missing:
        kinds["missing"] = [f"missing row {row_id}" for row_id in missing]
    for kind, lines in kinds.items():
        problems.extend(lines[:SHOW])
        if len(lines) > SHOW:
            problems.append(f"... and {len(lines) - SHOW} more {kind} problem(s)")
    return problems
