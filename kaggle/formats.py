"""What each competition's submission looks like: its columns, its row ids, its label format.

One table (`TASKS`) shared by the writers (mcqa.kaggle.submission) and the validator
(mcqa.kaggle.validate), so the two can never disagree. The row ids a submission must have are read
straight from the competition's test file, not through the dataset adapters: a row the adapter skips
(an unreadable choices cell, say) still needs its line in the submission.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from mcqa.datasets.base import read_rows

MAP_CATEGORIES = (
    "True_Correct",
    "True_Neither",
    "True_Misconception",
    "False_Correct",
    "False_Neither",
    "False_Misconception",
)
EEDI_LETTERS = "ABCD"


@dataclass(frozen=True)
class Task:
    name: str  # the name on the command line: eedi | codemmlu | map
    dataset: str  # the mcqa dataset adapter
    competition: str  # Kaggle's competition slug: the folder under /kaggle/input
    test_file: str  # the test file inside that folder
    columns: tuple[str, str]  # the submission's header
    per_row: int | None  # labels per row (space-separated); None: one value
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "eedi",
            "eedi",
            "eedi-mining-misconceptions-in-mathematics",
            "test.csv",
            ("QuestionId_Answer", "MisconceptionId"),
            25,
            "Eedi: 25 ranked misconception ids for every wrong answer of every test question (MAP@25)",
        ),
        Task(
            "codemmlu",
            "codemmlu_fpt",
            "fpt-ai-residency-batch-6-entry-test",
            "b6_test_data.csv",
            ("task_id", "answer"),
            None,
            "CodeMMLU, FPT Kaggle version: one answer letter per task",
        ),
        Task(
            "map",
            "map",
            "map-charting-student-math-misunderstandings",
            "test.csv",
            ("row_id", "Category:Misconception"),
            3,
            "MAP: 3 ranked Category:Misconception labels per student response (MAP@3)",
        ),
    ]
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def expected_rows(task: Task, test_file: Path) -> dict[str, dict]:
    """Row id -> what the validator needs to know about that row, in test-file order.

    Eedi: `{QuestionId}_{letter}` for every answer letter but the correct one. CodeMMLU: `task_id`,
    with the number of choices when the cell parses. MAP: `row_id`.
    """
    rows: dict[str, dict] = {}
    if task.name == "eedi":
        for _, row in read_rows(test_file, {"QuestionId", "CorrectAnswer"}):
            correct = str(row["CorrectAnswer"] or "").strip()
            for letter in EEDI_LETTERS:
                if letter != correct:
                    rows[f"{str(row['QuestionId']).strip()}_{letter}"] = {}
    elif task.name == "codemmlu":
        for _, row in read_rows(test_file, {"task_id", "choices"}):
            try:
                n = len(ast.literal_eval(row["choices"] or ""))
            except (ValueError, SyntaxError, TypeError):
                n = None
            rows[str(row["task_id"]).strip()] = {"choices": n}
    else:
        for _, row in read_rows(test_file, {"row_id"}):
            rows[str(row["row_id"]).strip()] = {}
    return rows


EEDI_ID = re.compile(r"^\d+_[A-D]$")
LETTER = re.compile(r"^[A-Z]$")
MISCONCEPTION_ID = re.compile(r"^\d+$")
MAP_LABEL = re.compile(r"^(?P<category>[A-Za-z]+_[A-Za-z]+):(?P<misconception>\S+)$")


def check_value(task: Task, row_id: str, value: str, info: dict) -> str | None:
    """What is wrong with one row's value, or None."""
    if task.name == "codemmlu":
        if not LETTER.match(value):
            return f"answer {value!r} is not one capital letter"
        n = info.get("choices")
        if n and ord(value) - 65 >= max(n, 1):
            return f"answer {value} is beyond the {n} choices of {row_id}"
        return None
    labels = value.split()
    if len(labels) != task.per_row:
        return f"{len(labels)} label(s), expected {task.per_row} space-separated"
    if len(set(labels)) != len(labels):
        return "a label is repeated"
    for label in labels:
        if task.name == "eedi" and not MISCONCEPTION_ID.match(label):
            return f"misconception id {label!r} is not a whole number"
        if task.name == "map":
            match = MAP_LABEL.match(label)
            if not match or match["category"] not in MAP_CATEGORIES:
                return f"label {label!r} is not Category:Misconception with a category of {', '.join(MAP_CATEGORIES)}"
            if match["category"].endswith("_Misconception") == (match["misconception"] == "NA"):
                return f"label {label!r}: a *_Misconception category names a misconception, the others have NA"
    return None
