"""CodeMMLU, the FPT AI Residency Kaggle version: choices are Python list literals, labels are messy.

Labels seen: `A`..`D`, `ANSWER: X`, a letter beyond the choices (`E` on 4 choices, `G`), and empty
(with `choices == []`). What names a real choice is kept; the rest is skipped with a counted reason.
"""

from __future__ import annotations

import re
from pathlib import Path

from mcqa.datasets.base import SkipRow, Split, blank, build_split, choice_list, python_literal, strip_prefix
from mcqa.types import Item

NAME = "codemmlu_fpt"
SPLITS = {"train": "b6_train_data.csv", "test": "b6_test_data.csv"}
REQUIRED = {"task_id", "question", "choices"}
LABEL = re.compile(r"^\s*(?:ANSWER\s*[:=]?\s*)?\(?([A-Za-z])\)?\s*\.?\s*$", re.IGNORECASE)


def parse_choices(text: str) -> list[str]:
    """A Python list literal of strings, parsed with `ast.literal_eval` (never `eval`)."""
    return choice_list(python_literal(text, "choices are not a Python list literal"))


def normalise_label(raw: str | None) -> str | None:
    """'C', 'ANSWER: C', ' c ' -> 'C'; empty -> None; anything else is a SkipRow."""
    if blank(raw):
        return None
    match = LABEL.match(raw)
    if not match:
        raise SkipRow("unreadable answer label", repr(raw[:40]))
    return match.group(1).upper()


def load(folder: Path, split: str) -> Split:
    """The train split must be labelled (a row without a usable label is skipped, counted); any other
    file is read with its labels where it has an `answer` column (a labelled test file is scored like
    any split), and a row whose label is missing or unusable there keeps its place, unlabelled, so a
    submission still covers every row."""
    labelled = split == "train"

    def parse_row(number: int, row: dict) -> Item:
        choices = parse_choices(row["choices"])
        if len(choices) < 2:
            raise SkipRow("fewer than 2 choices", f"{len(choices)} choices")
        answer = None
        if labelled:
            answer = normalise_label(row.get("answer"))
            if answer is None:
                raise SkipRow("no answer label")
            if ord(answer) - 65 >= len(choices):
                raise SkipRow("answer letter beyond the choices", f"{answer} with {len(choices)} choices")
        elif not blank(row.get("answer")):
            try:
                answer = normalise_label(row["answer"])
            except SkipRow:
                answer = None
            if answer is not None and ord(answer) - 65 >= len(choices):
                answer = None
        return Item(
            id=row["task_id"].strip(),
            question=strip_prefix(row["question"].strip(), "Question:"),
            choices=choices,
            answer=answer,
        )

    return build_split(NAME, split, folder / SPLITS[split], parse_row, REQUIRED | ({"answer"} if labelled else set()))
