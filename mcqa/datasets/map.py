"""MAP "Charting Student Math Misunderstandings": one item per student response.

The files give the question, the answer the student picked (as text) and their explanation, but not
the list of choices. Each question has four distinct answers across its responses, so the choices
are rebuilt from every response to that question in the folder (train and test together), sorted
for a stable lettering. The correct choice is the one most of the responses labelled `True_*` picked:
the labels are noisy (on one question 12 of 1,412 `True_*` rows picked a wrong answer), so the last
such row would not do.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from mcqa.datasets.base import SkipRow, Split, blank, build_split, read_rows
from mcqa.types import Item, Misconception

NAME = "map"
SPLITS = {"train": "train.csv", "test": "test.csv"}
REQUIRED = {"row_id", "QuestionId", "QuestionText", "MC_Answer", "StudentExplanation"}
NO_MISCONCEPTION = "NA"


def label_parts(label: str) -> tuple[str, str]:
    """`False_Misconception:Incomplete` -> ("False", "Misconception:Incomplete").

    The True_/False_ half only says whether the student's answer is the right one, which the item
    knows; the rest is what an explanation shows, so that is what evidence votes on.
    """
    truth, _, rest = label.partition("_")
    return truth, rest


def full_label(right: bool, rest: str) -> str:
    """("Misconception:Incomplete", right=False) -> `False_Misconception:Incomplete`."""
    return f"{'True' if right else 'False'}_{rest}"


def _counted_when_loaded(row: int, reason: str, detail: str = "") -> None:
    """A row the reader cannot split adds no choice here; `load` counts it when its split is read."""


def _question_choices(folder: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per question: its sorted distinct answers, and the correct one where a label shows it."""
    answers: dict[str, set[str]] = defaultdict(set)
    true_answers: dict[str, Counter] = defaultdict(Counter)
    for filename in SPLITS.values():
        path = folder / filename
        if not path.is_file():
            continue
        for _, row in read_rows(path, REQUIRED, on_skip=_counted_when_loaded):
            qid, answer = str(row["QuestionId"]).strip(), (row["MC_Answer"] or "").strip()
            if answer:
                answers[qid].add(answer)
            if (row.get("Category") or "").startswith("True_") and answer:
                true_answers[qid][answer] += 1
    correct = {q: max(sorted(c), key=c.get) for q, c in true_answers.items()}
    return {q: sorted(a) for q, a in answers.items()}, correct


def load(folder: Path, split: str) -> Split:
    choices_of, correct_of = _question_choices(folder)

    def parse_row(number: int, row: dict) -> Item:
        qid, picked = str(row["QuestionId"]).strip(), (row["MC_Answer"] or "").strip()
        if not picked:
            raise SkipRow("empty MC_Answer")
        choices = choices_of[qid]
        letters = [chr(65 + i) for i in range(len(choices))]
        chosen = letters[choices.index(picked)]
        answer = letters[choices.index(correct_of[qid])] if qid in correct_of else None
        category = (row.get("Category") or "").strip() or None
        label = (row.get("Misconception") or "").strip() or None
        misconceptions = {chosen: [label]} if label and label != NO_MISCONCEPTION else {}
        metadata = {"question_id": qid, "explanation": row["StudentExplanation"] or ""}
        if category:
            metadata["category"] = category
            metadata["label"] = f"{category}:{label or NO_MISCONCEPTION}"
        return Item(
            id=str(row["row_id"]).strip(),
            question=row["QuestionText"],
            choices=choices,
            answer=answer,
            chosen=chosen,
            misconceptions=misconceptions,
            metadata=metadata,
        )

    return build_split(NAME, split, folder / SPLITS[split], parse_row, REQUIRED)


def load_misconceptions(folder: Path) -> list[Misconception]:
    """MAP's misconception labels (the names are the ids), sorted, from the labelled train file."""
    labels = {
        row["Misconception"].strip()
        for _, row in read_rows(folder / SPLITS["train"], REQUIRED | {"Misconception"})
        if not blank(row.get("Misconception")) and row["Misconception"].strip() != NO_MISCONCEPTION
    }
    return [Misconception(id=label, name=label.replace("_", " ")) for label in sorted(labels)]
