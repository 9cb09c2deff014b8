"""How a (question, wrong answer) pair, or a whole item, is written as text for the embedder.

Which query format retrieves misconceptions best is measured by `mcqa eval retrieval`, not guessed;
`DEFAULT_QUERY_FORMAT` is set to the winner of that measurement (figures beside it).
Missing fields (MAP items have no construct or subject) are left out rather than written as "None".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mcqa.types import Item


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _wrong(item: Item, wrong: str) -> str:
    if wrong not in item.letters:
        raise ValueError(f"item {item.id}: {wrong!r} is not one of its choice letters {''.join(item.letters)}")
    return _clean(item.choice(wrong))


def hashes(item: Item, wrong: str) -> str:
    """`ConstructName ### QuestionText ### AnswerText`: the plainest concatenation."""
    parts = [_clean(item.construct), _clean(item.question), _wrong(item, wrong)]
    return " ### ".join(p for p in parts if p)


def category(item: Item, wrong: str) -> str:
    """`Category: ConstructName. Question: QuestionText Given Answer: AnswerText`: fields named in words."""
    head = f"Category: {_clean(item.construct)}. " if item.construct else ""
    return f"{head}Question: {_clean(item.question)} Given Answer: {_wrong(item, wrong)}"


def _header(item: Item) -> list[str]:
    """Subject, topic and question: how both queries and example passages begin."""
    parts = [f"Subject: {_clean(item.subject)}."] if item.subject else []
    if item.construct:
        parts.append(f"Topic: {_clean(item.construct)}.")
    parts.append(f"Question: {_clean(item.question)}")
    return parts


def with_subject_and_correct(item: Item, wrong: str) -> str:
    """Adds SubjectName and the correct answer: the gap between right and wrong is what a misconception explains."""
    parts = _header(item)
    if item.answer is not None and item.answer != wrong:
        parts.append(f"Correct answer: {_clean(item.choice(item.answer))}")
    parts.append(f"Incorrect answer: {_wrong(item, wrong)}")
    return " ".join(parts)


def answer_first(item: Item, wrong: str) -> str:
    """The wrong and correct answers before the question: MiniLM reads 256 tokens, long questions cut the tail."""
    parts = [f"Incorrect answer: {_wrong(item, wrong)}."]
    if item.answer is not None and item.answer != wrong:
        parts.append(f"Correct answer: {_clean(item.choice(item.answer))}.")
    if item.construct:
        parts.append(f"Topic: {_clean(item.construct)}.")
    parts.append(f"Question: {_clean(item.question)}")
    return " ".join(parts)


QUERY_FORMATS: dict[str, Callable[[Item, str], str]] = {
    "hashes": hashes,
    "category": category,
    "subject_correct": with_subject_and_correct,
    "answer_first": answer_first,
}
# Measured with `mcqa eval retrieval --dataset eedi` (zero-shot MiniLM, 2,587 misconceptions), MAP@25 / Recall@25:
#                    --split validation   --split validation --unseen   --split train (all)
#                    (699 queries)        (674 queries)                 (3,476 queries)
#   hashes           0.1635 / 0.4979      0.2618 / 0.6780               0.1798 / 0.5452
#   category         0.1650 / 0.5007      0.2539 / 0.6825               0.1800 / 0.5501
#   subject_correct  0.1780 / 0.5365      0.2515 / 0.7136               0.1793 / 0.5665
#   answer_first     0.1677 / 0.5050      0.2677 / 0.6751               0.1811 / 0.5463
# MAP@25 is a tie on the largest set (0.0018 apart on 3,476 queries) and changes winner between the
# validation sets; Recall@25 is won by subject_correct on all three, by 1.6 to 3.1 points. The agent
# reranks the retrieved candidates, so the recall of the candidate list is what retrieval must maximise.
DEFAULT_QUERY_FORMAT = "subject_correct"


def query_format(name: str) -> Callable[[Item, str], str]:
    try:
        return QUERY_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown query format {name!r}; known: {', '.join(QUERY_FORMATS)}") from None


def wrong_letters(item: Item, answer: str | None = None) -> list[str]:
    """The wrong answers to explain: the student's pick (MAP-style), else every distractor (Eedi-style).

    The gold letter marks the right answer where it is known; otherwise `answer` (the agent's own) does.
    """
    if item.chosen is not None:
        return [item.chosen]
    right = item.answer or answer
    return [x for x in item.letters if x != right]


def labelled_pairs(items: list[Item]) -> Iterator[tuple[Item, str, list[str]]]:
    """(item, wrong letter, its misconception ids) for every wrong answer that carries a label.

    A label on the correct answer (which no dataset should have) is not a misconception and is skipped.
    """
    for item in items:
        for letter_, ids in sorted(item.misconceptions.items()):
            if ids and letter_ != item.answer:
                yield item, letter_, list(ids)


def evidence_text(item: Item, letter_: str, build_query: Callable[[Item, str], str]) -> str:
    """A labelled answer as the label store holds it, and a new answer as it searches there.

    A student's explanation (MAP) is what tells one response's label from another's, and responses
    are searched among the same question's (`LabelStore`), so it is the chosen answer and the
    explanation alone; without one (Eedi), the retrieval query (`build_query`) as it is.
    """
    if explanation := _clean(item.metadata.get("explanation")):
        return f"Answer: {_wrong(item, letter_)}. Explanation: {explanation}"
    return build_query(item, letter_)


def evidence_labels(item: Item) -> list[tuple[str, str]]:
    """(letter, label) for each labelled answer of a solved item, the votes it can cast.

    A MAP response votes for its label less the True_/False_ half (which follows from the answer:
    `mcqa.datasets.map.label_parts`), `NA` categories included; an Eedi item, for the misconception
    of each labelled distractor.
    """
    if (label := item.metadata.get("label")) and item.chosen is not None:
        from mcqa.datasets.map import label_parts

        return [(item.chosen, label_parts(label)[1])]
    return [(letter_, m) for _, letter_, ids in labelled_pairs([item]) for m in ids]


def item_text(item: Item) -> str:
    """An item as one passage for the example store: what makes two questions alike for few-shot use.

    The answer is not written in: a query item has none to offer, and the store should match on
    the question, not on whether the answer is known. A student's chosen answer and explanation
    (MAP) are part of what the item is about, so they are.
    """
    parts = _header(item)
    parts.append("Choices: " + " ".join(f"{x}) {_clean(c)}" for x, c in zip(item.letters, item.choices, strict=True)))
    if item.chosen is not None:
        parts.append(f"Chosen: {item.chosen}.")
    if explanation := _clean(item.metadata.get("explanation")):
        parts.append(f"Explanation: {explanation}")
    return " ".join(parts)
