"""Eedi "Mining Misconceptions in Mathematics": one item per question, a misconception id per distractor."""

from __future__ import annotations

from pathlib import Path

from mcqa.datasets.base import SkipRow, Split, answer_letter, blank, build_split, read_rows
from mcqa.types import Item, Misconception

NAME = "eedi"
SPLITS = {"train": "train.csv", "test": "test.csv"}
CATALOGUE = "misconception_mapping.csv"
REQUIRED = {"QuestionId", "QuestionText", "CorrectAnswer", "AnswerAText", "AnswerBText", "AnswerCText", "AnswerDText"}


def misconception_id(value) -> str | None:
    """Eedi writes ids as floats ('1672.0'); an empty cell means no label."""
    if blank(value):
        return None
    try:
        return str(int(float(value)))
    except ValueError as exc:
        raise SkipRow("unreadable misconception id", repr(value)) from exc


def parse_row(number: int, row: dict) -> Item:
    letters = "ABCD"
    choices = [row[f"Answer{x}Text"] for x in letters]
    if any(blank(c) for c in choices):
        raise SkipRow("empty answer text")
    labels = {x: [m] for x in letters if (m := misconception_id(row.get(f"Misconception{x}Id"))) is not None}
    return Item(
        id=str(row["QuestionId"]).strip(),
        question=row["QuestionText"],
        choices=choices,
        answer=None if blank(row["CorrectAnswer"]) else answer_letter(row["CorrectAnswer"], len(choices)),
        subject=row.get("SubjectName") or None,
        construct=row.get("ConstructName") or None,
        misconceptions=labels,
        metadata={k: row[k] for k in ("ConstructId", "SubjectId") if not blank(row.get(k))},
    )


def load(folder: Path, split: str) -> Split:
    return build_split(NAME, split, folder / SPLITS[split], parse_row, REQUIRED)


def load_misconceptions(folder: Path) -> list[Misconception]:
    """The 2,587 misconceptions of `misconception_mapping.csv`, in id order."""
    path = folder / CATALOGUE
    return [
        Misconception(id=str(int(float(r["MisconceptionId"]))), name=r["MisconceptionName"].strip())
        for _, r in read_rows(path, {"MisconceptionId", "MisconceptionName"})
    ]
