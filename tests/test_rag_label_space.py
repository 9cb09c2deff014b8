"""`agent.label_space: question`: a MAP response ranked only among the labels the label store's split
gave the same question with the same correctness (mcqa.rag.label_space), on hand-made items and vectors
(no model, no data files)."""

import numpy as np
import pytest
from pydantic import ValidationError

from mcqa.agent.config import AgentConfig
from mcqa.agent.graph import Agent
from mcqa.rag.label_space import LabelSpace, restrict_labels, same_correctness
from mcqa.rag.queries import evidence_text
from mcqa.rag.store import LabelStore, label_records
from mcqa.rag.vectors import build_index
from mcqa.types import Item

CHOICES = ["1/3", "1/4", "2/3", "3/4"]  # A is right


def response(id_, chosen, label=None, question="q1", explanation="because"):
    metadata = {"question_id": question, "explanation": explanation}
    if label:
        metadata["label"] = label
    return Item(id=id_, question=f"Question {question}", choices=CHOICES, answer="A", chosen=chosen, metadata=metadata)


STORED = [
    response("r1", "A", "True_Correct:NA"),
    response("r2", "A", "True_Neither:NA"),
    response("r3", "B", "False_Misconception:Incomplete"),
    response("r4", "C", "False_Misconception:Additive"),
    response("r5", "C", "False_Neither:NA"),
    response("r6", "D", "False_Misconception:WNB", question="q2"),
]


def space() -> LabelSpace:
    return LabelSpace(label_records(STORED, lambda item, letter: ""))


def test_same_correctness_is_the_right_letter_or_every_wrong_one():
    assert same_correctness(response("x", "A"), "A") == ["A"]
    assert same_correctness(response("x", "C"), "A") == ["B", "C", "D"]


def test_allowed_labels_are_the_questions_with_the_same_correctness_less_the_true_false_half():
    labels = space()
    wrong, right = response("new1", "B"), response("new2", "A")
    assert labels.allowed(wrong, "A") == {"Misconception:Incomplete", "Misconception:Additive", "Neither:NA"}
    assert labels.allowed(right, "A") == {"Correct:NA", "Neither:NA"}
    assert "Misconception:WNB" not in labels.allowed(response("new3", "D"), "A"), "q2's labels stay with q2"


def test_nothing_is_allowed_for_an_unseen_question_or_an_unknown_correctness():
    labels = space()
    assert labels.allowed(response("new", "B", question="q9"), "A") == set()
    assert labels.allowed(response("new", "B"), None) == set()
    assert labels.allowed(Item(id="plain", question="Question q1", choices=CHOICES, answer="A"), "A") == set()


def test_an_items_own_record_alone_allows_nothing():
    """Solving a split against itself (train with train examples), r3's label rests on r3 alone."""
    assert "Misconception:Incomplete" not in space().allowed(STORED[2], "A")
    assert "Misconception:Additive" in space().allowed(STORED[2], "A")


RANKED = [
    ("Misconception:WNB", 0.9),
    ("Correct:NA", 0.8),
    ("Misconception:Incomplete", 0.7),
    ("Neither:NA", 0.6),
    ("Misconception:Additive", 0.5),
    ("Misconception:Other", 0.4),
]


def test_restriction_drops_labels_outside_the_set_in_order():
    allowed = {"Misconception:Incomplete", "Misconception:Additive", "Neither:NA"}
    assert restrict_labels(RANKED, allowed) == [
        ("Misconception:Incomplete", 0.7),
        ("Neither:NA", 0.6),
        ("Misconception:Additive", 0.5),
    ]


def test_restriction_fills_three_places_from_the_best_of_the_rest():
    assert restrict_labels(RANKED, {"Misconception:Additive"}) == [
        ("Misconception:Additive", 0.5),
        ("Misconception:WNB", 0.9),
        ("Correct:NA", 0.8),
    ]
    assert restrict_labels(RANKED, {"Misconception:Additive"}, keep=1) == [("Misconception:Additive", 0.5)]
    assert restrict_labels(RANKED[:2], {"never ranked"}) == RANKED[:2], "a shorter list is kept whole"


def test_an_empty_set_restricts_nothing():
    out = restrict_labels(RANKED, set())
    assert out == RANKED and out is not RANKED


def test_the_label_store_derives_its_space_once():
    records = label_records(STORED, lambda item, letter: "")
    store = LabelStore(records, build_index(np.eye(len(records), 8, dtype=np.float32), "flat"), embedder=None)
    assert store.label_space is store.label_space
    assert store.label_space.allowed(response("new", "A"), "A") == {"Correct:NA", "Neither:NA"}


def test_label_space_is_question_for_map_all_elsewhere_and_checked():
    assert AgentConfig().for_dataset("map").label_space == "question"
    for dataset in ("eedi", "arc_challenge", None):
        assert AgentConfig().for_dataset(dataset).label_space == "all"
    assert AgentConfig(label_space="all").for_dataset("map").label_space == "all"  # an explicit setting wins
    with pytest.raises(ValidationError):
        AgentConfig(label_space="everything")


class _Embedder:
    """What _with_votes asks of the store's embedder: the vectors of texts it was handed already."""

    def encode_reusing(self, texts, known):
        return np.stack([known[t] for t in texts])


@pytest.mark.parametrize("label_space", ["all", "question"])
def test_the_agent_ranks_map_labels_within_the_space(label_space):
    """The catalogue's best hit (WNB, only ever seen on q2) leads under `all`; `question` drops it for a
    wrong answer to q1, keeps q1's wrong-answer labels in their fused order, and the True_/False_ half
    follows from correctness either way."""
    records = label_records(STORED, lambda item, letter: "")
    vectors = np.eye(len(records), 8, dtype=np.float32)
    store = LabelStore(records, build_index(vectors, "flat"), _Embedder())
    query = response("new", "C", explanation="new explanation")
    text = evidence_text(query, "C", lambda item, letter: "")
    encoded = {text: vectors[3] + vectors[4]}  # cosine 1 with r4 (Additive) and r5 (Neither), C's answers
    config = AgentConfig(
        votes=5, vote_threshold=0.0, vote_weight=0.5, classifier="none", ngram="none", label_space=label_space
    )
    resources = type("R", (), {"labels": store})()
    agent = Agent(config.for_dataset("map"), resources, ["misconceptions"])
    hits = [("WNB", 0.9), ("Incomplete", 0.2), ("Other", 0.1)]
    [ranked] = agent._with_votes([query], {}, [("new", "C")], [hits], lambda item, letter: "", encoded)
    labels = [label for label, _ in ranked]
    assert all(label.startswith("False_") for label in labels)
    if label_space == "all":
        assert labels == [
            "False_Misconception:WNB",
            "False_Misconception:Additive",
            "False_Neither:NA",
            "False_Misconception:Incomplete",
            "False_Misconception:Other",
        ]
    else:
        assert labels == ["False_Misconception:Additive", "False_Neither:NA", "False_Misconception:Incomplete"]
