"""Position bias: permuting items and mapping predictions back, consistency, and PriDe's prior
estimate, checked on cases where the right result is known exactly."""

import numpy as np
import pytest

from mcqa.eval.bias import (
    consistency,
    cyclic_orders,
    debias,
    debias_summary,
    estimate_prior,
    parse_perm_id,
    permute_item,
    permuted_copies,
    position_summary,
    random_orders,
    unpermute_prediction,
)
from mcqa.types import Item, Prediction, letter


def item(id_="q", answer="B", n=4, **kw):
    return Item(id=id_, question="?", choices=[f"c{i}" for i in range(n)], answer=answer, **kw)


def test_permute_item_moves_every_letter_with_its_choice():
    original = item(answer="B", chosen="C", misconceptions={"C": ["7"], "D": ["9"]})
    copy = permute_item(original, [2, 0, 3, 1])
    assert copy.id == "q#perm=CADB" and parse_perm_id(copy.id) == ("q", [2, 0, 3, 1])
    assert copy.choices == ["c2", "c0", "c3", "c1"]
    assert copy.answer == "D" and copy.choice(copy.answer) == original.choice(original.answer)
    assert copy.chosen == "A"
    assert copy.misconceptions == {"A": ["7"], "C": ["9"]}
    assert parse_perm_id("plain-id") is None
    with pytest.raises(ValueError):
        permute_item(original, [0, 0, 1, 2])


def test_unpermute_maps_the_prediction_back_to_the_original_letters():
    order = [2, 0, 3, 1]
    on_copy = Prediction(
        item_id="q#perm=CADB",
        answer="D",
        option_probs={"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4},
        misconceptions={"A": ["7"]},
        misconception_scores={"A": [0.9]},
        flips=["A->D"],
        correct=True,
    )
    back = unpermute_prediction(on_copy, order)
    assert back.answer == "B" and back.correct is True
    assert back.option_probs == {"A": 0.2, "B": 0.4, "C": 0.1, "D": 0.3}
    assert back.misconceptions == {"C": ["7"]} and back.misconception_scores == {"C": [0.9]}
    assert back.flips == ["C->B"]


def test_orders_are_distinct_repeatable_and_capped():
    four = item("x")
    orders = random_orders(four, 5, seed=1)
    assert len(orders) == 5 and len({tuple(o) for o in orders}) == 5
    assert list(range(4)) not in orders
    assert orders == random_orders(four, 5, seed=1) != random_orders(four, 5, seed=2)
    assert random_orders(item("y", answer="A", n=2), 3) == [[1, 0]]  # only one other order exists
    shifts = cyclic_orders(4)
    assert len(shifts) == 3
    for position in range(4):  # with the identity, each choice sits at each position once
        assert sorted([position] + [s[position] for s in shifts]) == [0, 1, 2, 3]
    shuffled, shifted = permuted_copies([four, item("z")], k=1, debias=1, seed=0)
    assert [parse_perm_id(c.id)[0] for c in shuffled] == ["x", "z"]
    assert len(shifted) == 3 and len({parse_perm_id(c.id)[0] for c in shifted}) == 1


def biased_model(prior, preference, order):
    """P(position j) proportional to prior[j] x preference[choice shown at j]: PriDe's model, exactly."""
    scores = np.array([prior[j] * preference[order[j]] for j in range(len(order))])
    return scores / scores.sum()


def predictions_of(item_id, prior, preference):
    n = len(prior)
    original = biased_model(prior, preference, list(range(n)))
    main = Prediction(
        item_id=item_id,
        answer=letter(int(np.argmax(original))),
        option_probs={letter(i): float(p) for i, p in enumerate(original)},
    )
    copies = []
    for order in cyclic_orders(n):
        probs = biased_model(prior, preference, order)
        on_copy = Prediction(
            item_id=f"{item_id}#perm={''.join(letter(i) for i in order)}",
            answer=letter(int(np.argmax(probs))),
            option_probs={letter(j): float(p) for j, p in enumerate(probs)},
        )
        copies.append(unpermute_prediction(on_copy, order))
    return main, copies


def test_pride_recovers_the_letter_prior_and_removes_it():
    prior = [0.55, 0.25, 0.15, 0.05]
    items = [item("1", answer="C"), item("2", answer="D"), item("3", answer="B")]
    preferences = {"1": [0.2, 0.2, 0.4, 0.2], "2": [0.1, 0.2, 0.3, 0.4], "3": [0.2, 0.5, 0.2, 0.1]}
    mains, permuted = {}, []
    for it in items:
        mains[it.id], copies = predictions_of(it.id, prior, preferences[it.id])
        permuted += copies
    estimated = estimate_prior(items, mains, permuted)
    assert estimated[4] == pytest.approx(prior, abs=1e-6)
    assert [mains[i].answer for i in "123"] == ["A", "A", "B"]  # the prior wins on items 1 and 2
    assert [debias(mains[i], estimated[4]).answer for i in "123"] == ["C", "D", "B"]
    summary = debias_summary(items, mains, permuted, sample_size=3)
    assert summary["accuracy"]["accuracy"] == 1.0 and summary["changed"] == 2
    # an item without all its shifts tells nothing about the prior
    assert estimate_prior(items, mains, permuted[:2]) == {}


def test_position_summary_and_consistency():
    items = [item("1", answer="A"), item("2", answer="A"), item("3", answer="B"), item("4", answer="B")]
    predictions = [Prediction(item_id=i, answer=a) for i, a in zip("1234", "AAAB", strict=True)]
    summary = position_summary(items, predictions)
    assert summary["predicted_letters"] == {"A": 3, "B": 1} and summary["gold_letters"] == {"A": 2, "B": 2}
    assert summary["accuracy_by_gold"]["B"] == {"n": 2, "accuracy": 0.5}
    assert summary["rstd"] == pytest.approx(25.0)
    copies = [Prediction(item_id="1#perm=BACD", answer="A"), Prediction(item_id="2#perm=BACD", answer="B")]
    result = consistency(items, predictions, copies)
    assert result["items"] == 2 and result["consistency"] == 0.5 and result["copy_accuracy"] == 0.5
    assert result["changes"] == {"A->B": 1}
