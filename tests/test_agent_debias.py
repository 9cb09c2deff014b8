"""Debiasing that changes answers (mcqa.agent.debias), with the real tiny model: the agent's
probabilities equal the average over cyclic shifts scored directly, PriDe divides later items by the
prior its sample measured, and a changed answer is in the flip ledger.

A flip is checked on an item where one must happen (found by scoring the shifts directly, or made
certain by the prior), so the checks cannot pass on a run in which nothing flipped."""

import numpy as np
import pytest

from mcqa.agent.debias import AnswerDebias
from mcqa.agent.solver import AgentSolver
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.eval.bias import cyclic_orders, permute_item, position_prior
from mcqa.eval.metrics import flip_ledger
from mcqa.prompts import answer_chat

FLIP_KINDS = ("wrong_to_right", "right_to_wrong", "wrong_to_wrong", "unlabelled")


def config(**agent):
    agent = {"permutations": 1, "tools": [], **agent}  # no tool may move the answer the shifts chose
    return load_config(
        **{
            "llm.model": "smollm2-135m",
            "llm.n_ctx": 2048,
            "agent.verify": False,
            **{f"agent.{k}": v for k, v in agent.items()},
        }
    )


@pytest.fixture(scope="module")
def pool(data_root):
    return [it for it in load_split("codemmlu_fpt", "train", data_root).items if len(it.choices) == 4][:20]


@pytest.fixture(scope="module")
def code_items(pool):
    return pool[:5]


def shifted_probs(llm, item, orders):
    """Each presentation's probabilities mapped back to the original choices, scored without the agent."""
    rows = []
    for order in orders:
        shown = np.exp(llm.score_options([answer_chat(permute_item(item, order))], item.letters)[0])
        back = np.empty(len(order))
        back[order] = shown
        rows.append(back)
    return np.array(rows)


def first_flipping(llm, items):
    """The first item whose answer as shown differs from its answer averaged over the 4 cyclic shifts,
    scored directly: on it the agent must record a "permute" flip."""
    for item in items:
        rows = shifted_probs(llm, item, [[0, 1, 2, 3]] + cyclic_orders(4))
        if np.argmax(rows[0]) != np.argmax(rows.mean(axis=0)):
            return item
    pytest.fail(f"none of {len(items)} items changes its answer under the shifts: choose other items")


def test_permutations_average_each_choice_over_the_shifts(tiny_llm, code_items, pool):
    flipping = first_flipping(tiny_llm, pool)
    items = [*[it for it in code_items[:2] if it.id != flipping.id], flipping]
    solver = AgentSolver(config(permutations=4), dataset="codemmlu_fpt", llm=tiny_llm)
    predictions = solver(items)
    for item, prediction in zip(items, predictions, strict=True):
        expected = shifted_probs(tiny_llm, item, [[0, 1, 2, 3]] + cyclic_orders(4)).mean(axis=0)
        got = np.array([prediction.option_probs[x] for x in item.letters])
        assert np.allclose(got, expected / expected.sum(), atol=2e-3)
        assert prediction.answer == item.letters[int(np.argmax(expected))]
        plain = item.letters[int(np.argmax(shifted_probs(tiny_llm, item, [[0, 1, 2, 3]])[0]))]
        assert prediction.flips == ([] if plain == prediction.answer else [f"permute: {plain}->{prediction.answer}"])
    flipped = predictions[-1]
    assert flipped.flips and flipped.flips[0].startswith("permute: "), f"{flipping.id} must flip: {flipped}"
    ledger = flip_ledger(items, predictions)
    assert ledger["flips"] >= 1 and ledger["by_step"]["permute"]["net"] == ledger["net"]


def test_pride_divides_later_items_by_the_prior_of_its_sample(tiny_llm, code_items):
    solver = AgentSolver(config(pride=2, batch_size=2), dataset="codemmlu_fpt", llm=tiny_llm)
    predictions = solver(code_items)
    sample, rest = code_items[:2], code_items[2:]
    # the prior from the sample: per item, the probability of each *position* under the 4 shifts
    priors = []
    for item in sample:
        rows = []
        for order in [[0, 1, 2, 3]] + cyclic_orders(4):
            rows.append(np.exp(tiny_llm.score_options([answer_chat(permute_item(item, order))], item.letters)[0]))
        priors.append(position_prior(np.array(rows)))
    prior = np.mean(priors, axis=0)
    prior /= prior.sum()
    assert np.allclose(solver.agent.debias.prior(4), prior, atol=2e-3)
    for item, prediction in zip(rest, predictions[2:], strict=True):
        raw = shifted_probs(tiny_llm, item, [[0, 1, 2, 3]])[0]
        expected = raw / prior / (raw / prior).sum()
        got = np.array([prediction.option_probs[x] for x in item.letters])
        assert np.allclose(got, expected, atol=2e-3)
        plain = item.letters[int(np.argmax(raw))]
        assert prediction.flips == ([] if plain == prediction.answer else [f"pride: {plain}->{prediction.answer}"])
    ledger = flip_ledger(code_items, predictions)
    assert ledger["flips"] == sum(len(p.flips) for p in predictions)
    assert set(ledger["by_step"]) <= {"permute", "pride"}


def test_a_prior_that_outweighs_the_answer_flips_it(tiny_llm, code_items):
    """PriDe's sample is fed through the debias object the way the answer node feeds it, with shifted
    scores that put nearly all the prior on the position the item's plain answer sits at: dividing by
    it must move the answer, and the move is a "pride" flip in the prediction and the ledger."""
    items = code_items[2:4]
    raws = [shifted_probs(tiny_llm, item, [[0, 1, 2, 3]])[0] for item in items]
    plain = int(np.argmax(raws[0]))
    prior = np.full(4, 1e-5)
    prior[plain] = 1 - 3e-5  # a 1e5 handicap: the runner-up's probability need only be 1e-5 of the leader's
    solver = AgentSolver(config(pride=1), dataset="codemmlu_fpt", llm=tiny_llm)
    debias = solver.agent.debias
    orders = debias.orders(4)  # the one sample place, taken here instead of by an item
    assert len(orders) == 4
    assert debias.combine(orders, [prior] * 4)[1] == "permute"
    assert np.allclose(debias.prior(4), prior)
    expected = [raw / prior / (raw / prior).sum() for raw in raws]
    assert np.argmax(expected[0]) != plain, "the prior must outweigh the plain answer's lead"
    predictions = solver(items)
    for item, raw, want, prediction in zip(items, raws, expected, predictions, strict=True):
        assert np.allclose([prediction.option_probs[x] for x in item.letters], want, atol=2e-3)
        before, after = item.letters[int(np.argmax(raw))], item.letters[int(np.argmax(want))]
        assert prediction.answer == after
        assert prediction.flips == ([] if before == after else [f"pride: {before}->{after}"])
    assert predictions[0].flips == [f"pride: {items[0].letters[plain]}->{predictions[0].answer}"]
    ledger = flip_ledger(items, predictions)
    assert ledger["flips"] == sum(len(p.flips) for p in predictions)
    assert sum(ledger["by_step"].get("pride", {}).get(kind, 0) for kind in FLIP_KINDS) >= 1


def test_answer_debias_plans_the_sample_then_single_prompts():
    debias = AnswerDebias(permutations=1, pride=2)
    assert len(debias.orders(4)) == 4 and len(debias.orders(4)) == 4  # the sample: every shift
    assert debias.orders(4) == [[0, 1, 2, 3]]  # then the item as shown
    assert len(debias.orders(3)) == 3  # a separate sample per number of choices
    assert debias.prior(4) is None  # nothing measured yet
    uniform = [np.full(4, 0.25)] * 4
    for _ in range(2):
        probs, step = debias.combine([[0, 1, 2, 3]] + cyclic_orders(4), uniform)
        assert step == "permute" and np.allclose(probs, 0.25)
    assert np.allclose(debias.prior(4), 0.25)
