"""A deterministic train/validation split of a labelled split, by question or by row, optionally with unseen labels.

The competitions' own test labels are hidden, so retrieval and fine-tuning are judged on items held
out of the shared train file. Eedi items are held out by question: its test questions are new ones.
MAP is held out by row (student response, `DatasetSpec.holdout`): it has only 15 questions and
Kaggle's test asks the same 15, so holding out whole questions would leave nearly every validation
label on a question fit never saw, a harder task than the real one.

`unseen=True` makes every misconception labelled in validation absent from train, the case the Eedi
leaderboard rewarded (its test set had many misconceptions no train question shows). Questions that
share a misconception are linked; whole linked groups go to one side. On Eedi one group holds 832 of
the 1,496 questions and always stays in train, so unseen validation is drawn from the rarer
misconceptions: the ones most likely to be unseen in practice.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from mcqa.datasets import get_spec, load_split
from mcqa.types import Item

# Names that `load_items` accepts on top of a dataset's own splits: the two sides of its train split,
# the same in unseen mode (every validation misconception absent from fit-unseen), and the two sides of
# `fit` split again (`-inner`, seed + 1): where a setting is chosen without ever reading `validation`.
DERIVED_SPLITS = {
    "fit": 0,
    "validation": 1,
    "fit-unseen": 0,
    "validation-unseen": 1,
    "fit-inner": 0,
    "validation-inner": 1,
}
UNSEEN_SUFFIX, INNER_SUFFIX = "-unseen", "-inner"


def unseen_mode(split: str, unseen: bool = False) -> bool:
    """Whether a derived split is cut in unseen mode: asked for, or named `...-unseen`."""
    return unseen or split.endswith(UNSEEN_SUFFIX)


def question_of(item: Item) -> str:
    return str(item.metadata.get("question_id", item.id))


def row_of(item: Item) -> str:
    return item.id


HOLDOUT_UNITS = {"question": question_of, "row": row_of}


def _labels(item: Item) -> set[str]:
    return {m for ids in item.misconceptions.values() for m in ids}


def _linked_groups(questions: dict[str, list[Item]]) -> list[list[str]]:
    """Questions joined (transitively) by a shared misconception label, via union-find."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for question, items in questions.items():
        root("q:" + question)
        for label in sorted(set().union(*(_labels(i) for i in items))):
            parent[root("q:" + question)] = root("m:" + label)
    groups: dict[str, list[str]] = defaultdict(list)
    for question in questions:
        groups[root("q:" + question)].append(question)
    # Ordered by content, not by which node became the root: the order must not depend on set
    # iteration, which changes with each process's hash seed.
    return sorted(sorted(g) for g in groups.values())


def train_validation(
    items: list[Item], fraction: float = 0.2, seed: int = 0, unseen: bool = False, by: str = "question"
) -> tuple[list[Item], list[Item]]:
    """(train, validation), each in the input order; about `fraction` of the questions (`by="row"`: of
    the items) go to validation.

    The same items, fraction and seed always give the same split (no global random state is used).
    """
    if by not in HOLDOUT_UNITS:
        raise ValueError(f"by must be one of {sorted(HOLDOUT_UNITS)}, got {by!r}")
    unit_of = HOLDOUT_UNITS[by]
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    questions: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        questions[unit_of(item)].append(item)
    rng = random.Random(seed)
    target = round(fraction * len(questions))
    if unseen:
        groups = _linked_groups(questions)
        rng.shuffle(groups)
        held, size = set(), 0
        for group in groups:  # first fit: a group that would overshoot is skipped, a smaller one may follow
            if size + len(group) <= target:
                held.update(group)
                size += len(group)
    else:
        order = sorted(questions)
        rng.shuffle(order)
        held = set(order[:target])
    train = [i for i in items if unit_of(i) not in held]
    validation = [i for i in items if unit_of(i) in held]
    return train, validation


def load_items(
    dataset: str, split: str, root: Path | None = None, fraction: float = 0.2, seed: int = 0, unseen: bool = False
) -> list[Item]:
    """The items of a dataset split, or of `fit` / `validation`: the two sides of its train split, held
    out by the dataset's unit (`DatasetSpec.holdout`: question, or row for MAP).

    `fit-unseen` / `validation-unseen` are the sides in unseen mode, whatever `unseen` says.
    `fit-inner` / `validation-inner` are the two sides of `fit` cut again the same way with seed + 1:
    settings chosen there never see `validation`, on which they are then reported.
    """
    if split in DERIVED_SPLITS:
        unseen = unseen_mode(split, unseen)
        by = get_spec(dataset).holdout
        items = load_split(dataset, "train", root).items
        if split.endswith(INNER_SUFFIX):
            items = train_validation(items, fraction, seed, unseen, by=by)[0]
            seed += 1
        return train_validation(items, fraction, seed, unseen, by=by)[DERIVED_SPLITS[split]]
    return load_split(dataset, split, root).items
