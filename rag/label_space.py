"""Which labels a MAP response may be ranked among (`agent.label_space: question`).

MAP's responses answer one of a few questions again and again, and each question shows few of the
labels: a question about fractions never gets `Misconception:Additive` if no response to it ever did.
The competition's medal solutions ranked only the labels the train file gave responses to the same
question whose answer was as right as this one's; this module holds those sets and that restriction.

The sets come from the label store's own records (`LabelStore.label_space`), so they are exactly the
labelled source the votes use (the examples split; `fit` when solving `validation`, so a validation
response never sees its own row) and a Kaggle bundle, which ships its label store, ships them too.
A record keeps the label less its True_/False_ half and the answer it was given to (`answer_group`:
question and answer text); whether that answer is the right one is read off the query item, whose
choices are every answer to its question, the same way the half of the predicted label is.
"""

from __future__ import annotations

from collections import defaultdict

from mcqa.types import Item

MAP_PLACES = 3  # MAP@3 scores three labels per response: a restricted list never holds fewer


def same_correctness(item: Item, right: str) -> list[str]:
    """The item's letters whose answers are as right as the student's: the right letter when the student
    picked it, else every wrong one (a wrong response's label set is that of all the wrong answers)."""
    picked_right = item.chosen == right
    return [x for x in item.letters if (x == right) == picked_right]


class LabelSpace:
    """Per answer group (`answer_group`), each label its stored answers carry and the items carrying it.

    Built once per label store, so once per examples split; the items are kept so that an item solved
    against its own split (`train` with train examples) does not allow a label on its own record alone,
    as a label search never returns its own record.
    """

    def __init__(self, records: list[dict]):
        labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for record in records:
            labels[record["group"]][record["label"]].add(record["item"])
        self._labels = {group: dict(by_label) for group, by_label in labels.items()}

    def __len__(self) -> int:
        return len(self._labels)

    def allowed(self, item: Item, right: str | None) -> set[str]:
        """The labels (less the True_/False_ half) that other stored responses to the item's question with
        the same correctness carry. Empty where there are none (a question never seen, or never with this
        correctness) or where correctness is unknown (`right` None, or no student's pick): no restriction."""
        from mcqa.rag.store import answer_group

        if right is None or item.chosen is None:
            return set()
        out = set()
        for letter in same_correctness(item, right):
            for label, carriers in self._labels.get(answer_group(item, letter), {}).items():
                if len(carriers) > (item.id in carriers):
                    out.add(label)
        return out


def restrict_labels(
    ranked: list[tuple[str, float]], allowed: set[str], keep: int = MAP_PLACES
) -> list[tuple[str, float]]:
    """The ranked (label, score) list without the labels outside `allowed`, in its order; where fewer than
    `keep` allowed labels are ranked, the best of the others fill the list up to `keep`, after them (MAP@3
    scores three places, an empty one scores nothing). An empty `allowed` restricts nothing: an unseen
    question keeps the whole list. Labels in `allowed` that the list does not rank are not added: they
    have no score, and with MAP's default classifier every stored label is ranked anyway."""
    if not allowed:
        return list(ranked)
    inside = [hit for hit in ranked if hit[0] in allowed]
    if len(inside) >= keep:
        return inside
    return inside + [hit for hit in ranked if hit[0] not in allowed][: keep - len(inside)]
