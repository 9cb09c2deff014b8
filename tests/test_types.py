import pytest
from pydantic import ValidationError

from mcqa.types import Item, Prediction, index_of, letter


def test_letters_follow_choices():
    item = Item(id="1", question="2+2?", choices=["3", "4", "5"], answer="B")
    assert item.letters == ["A", "B", "C"]
    assert item.choice("B") == "4"
    assert letter(2) == "C" and index_of("C") == 2


@pytest.mark.parametrize(
    "bad",
    [
        dict(choices=["only one"]),
        dict(choices=["a", "b"], answer="C"),
        dict(choices=["a", "b"], chosen="Z"),
        dict(choices=["a", "b"], misconceptions={"D": ["12"]}),
    ],
)
def test_invalid_items_are_rejected(bad):
    with pytest.raises(ValidationError):
        Item(id="x", question="q", **bad)


def test_prediction_round_trips_through_json():
    p = Prediction(
        item_id="7",
        answer="A",
        option_probs={"A": 0.7, "B": 0.3},
        correct=True,
        misconceptions={"B": ["12", "40"]},
        misconception_scores={"B": [0.9, 0.2]},
    )
    assert Prediction.model_validate_json(p.model_dump_json()) == p
