"""Position bias: does the model pick a letter rather than an answer?

Three views, from cheapest to most thorough:
- `position_summary`: accuracy by gold letter, the predicted-letter distribution against the gold
  one, and RStd (the standard deviation of the per-letter recalls, the bias measure of Zheng et al.,
  ICLR 2024, "Large Language Models Are Not Robust Multiple Choice Selectors").
- permutation runs: the same item re-asked with its choices shuffled (`permute_item`), the
  prediction mapped back to the original letters (`unpermute_prediction`), and `consistency` over
  the copies. A model that answers the content gives the same original letter every time.
- PriDe debiasing (same paper): on a small sample, every cyclic shift of the choices is asked; the
  mean log-probability each *position* gets over the shifts estimates the model's letter prior
  (the content averages out), and every prediction is then divided by that prior (`debias`).

A permuted copy's id names its order (`17#perm=CABD`: position A shows original choice C, ...), so
a permutation file can be read back, resumed and mapped without keeping any other state.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from itertools import permutations as all_orders

import numpy as np

from mcqa.eval.metrics import accuracy_summary, is_correct, paired
from mcqa.types import Item, Prediction, index_of, letter

PERM_TAG = "#perm="


# --- permuting items and mapping predictions back ---------------------------------------------------


def perm_id(item_id: str, order: list[int]) -> str:
    return f"{item_id}{PERM_TAG}{''.join(letter(i) for i in order)}"


def parse_perm_id(permuted_id: str) -> tuple[str, list[int]] | None:
    """(original id, order) of a permuted copy's id, or None for an original id."""
    original, tag, code = permuted_id.rpartition(PERM_TAG)
    if not tag or not code.isalpha():
        return None
    return original, [index_of(c) for c in code]


def permute_item(item: Item, order: list[int]) -> Item:
    """`item` with its choices in `order` (order[j] = the original index shown at position j).

    Every letter-valued field moves with its choice: the gold answer, the student's chosen answer,
    and the misconception labels, so a permuted item is graded exactly like the original.
    """
    if sorted(order) != list(range(len(item.choices))):
        raise ValueError(f"{order} is not a permutation of {len(item.choices)} choices")
    new_letter = {letter(original): letter(position) for position, original in enumerate(order)}
    return item.model_copy(
        update={
            "id": perm_id(item.id, order),
            "choices": [item.choices[i] for i in order],
            "answer": new_letter.get(item.answer) if item.answer else None,
            "chosen": new_letter.get(item.chosen) if item.chosen else None,
            "misconceptions": {new_letter[k]: list(v) for k, v in item.misconceptions.items()},
            "metadata": {**item.metadata, "original_id": item.id},
        }
    )


def unpermute_prediction(prediction: Prediction, order: list[int]) -> Prediction:
    """A prediction on a permuted copy, with every letter mapped back to the original lettering.

    The item id stays the permuted one (it names the order); `correct` is unchanged because the
    gold letter moved with its choice.
    """
    back = {letter(position): letter(original) for position, original in enumerate(order)}

    def flip(text: str) -> str:
        before, arrow, after = text.partition("->")
        return f"{back.get(before.strip(), before)}{arrow}{back.get(after.strip(), after)}" if arrow else text

    return prediction.model_copy(
        update={
            "answer": back.get(prediction.answer) if prediction.answer else None,
            "option_probs": {
                back[k]: v for k, v in sorted(prediction.option_probs.items(), key=lambda kv: back[kv[0]])
            },
            "misconceptions": {back[k]: v for k, v in prediction.misconceptions.items()},
            "misconception_scores": {back[k]: v for k, v in prediction.misconception_scores.items()},
            "flips": [flip(f) for f in prediction.flips],
        }
    )


def position_probs(prediction: Prediction, order: list[int]) -> np.ndarray:
    """The probability the model gave each *position* (A, B, ...) of the copy it was shown."""
    return np.array([prediction.option_probs.get(letter(original), float("nan")) for original in order])


def random_orders(item: Item, k: int, seed: int = 0) -> list[list[int]]:
    """`k` distinct non-identity orders of `item`'s choices (fewer when the item has fewer), the same
    for the same item and seed in every process (a resumed run re-asks the same copies)."""
    n = len(item.choices)
    possible = math.factorial(n) - 1
    rng = random.Random(f"{seed}:{item.id}")
    identity, orders = list(range(n)), []
    if possible <= 4 * k:  # few choices: draw from the full list, no rejection loop
        pool = [list(o) for o in all_orders(range(n)) if list(o) != identity]
        return rng.sample(pool, min(k, possible))
    while len(orders) < k:
        order = rng.sample(range(n), n)
        if order != identity and order not in orders:
            orders.append(order)
    return orders


def cyclic_orders(n: int) -> list[list[int]]:
    """The n-1 non-identity cyclic shifts: with the original, each choice sits at each position once."""
    return [[(j + shift) % n for j in range(n)] for shift in range(1, n)]


def seeded_sample(items: list[Item], size: int, seed: int = 0) -> list[Item]:
    """A fixed random sample of `size` items, in random order. Drawn by id, so the same items on every
    resume and whatever the file order; a larger `size` keeps the smaller sample and adds to it."""
    ranked = sorted(items, key=lambda it: random.Random(f"{seed}:sample:{it.id}").random())
    return ranked[:size]


def permuted_copies(items: list[Item], k: int, debias: int, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """The permuted copies a run asks: (`k` random orders of every item, for consistency; every
    cyclic shift of the `debias` sample items, for PriDe). An order in both lists is asked once,
    as its ids are equal, but each list keeps it: consistency is measured over the random copies
    only, so it does not depend on which items the debias sample drew."""
    shuffled = [permute_item(item, order) for item in (items if k else []) for order in random_orders(item, k, seed)]
    shifted = [
        permute_item(item, order)
        for item in (seeded_sample(items, debias, seed) if debias else [])
        for order in cyclic_orders(len(item.choices))
    ]
    return shuffled, shifted


def permuted_solver(solver):
    """A Solver over permuted copies whose predictions come back in the original lettering."""

    def solve(items: list[Item]) -> list[Prediction]:
        predictions = solver(items)
        return [unpermute_prediction(p, parse_perm_id(it.id)[1]) for it, p in zip(items, predictions, strict=True)]

    return solve


# --- what the letters say ------------------------------------------------------------------------


def position_summary(items: list[Item], predictions) -> dict:
    """Accuracy by gold letter, gold vs predicted letter counts, and RStd (in accuracy points)."""
    by_gold: dict[str, list[bool]] = defaultdict(list)
    gold, predicted = Counter(), Counter()
    for item, prediction in paired(items, predictions):
        if prediction.answer is not None:
            predicted[prediction.answer] += 1
        if item.answer is not None:
            gold[item.answer] += 1
            by_gold[item.answer].append(bool(is_correct(item, prediction)))
    letters = sorted(set(gold) | set(predicted))
    recalls = {k: sum(v) / len(v) for k, v in sorted(by_gold.items())}
    return {
        "accuracy_by_gold": {k: {"n": len(by_gold[k]), "accuracy": recalls[k]} for k in recalls},
        "gold_letters": {k: gold.get(k, 0) for k in letters},
        "predicted_letters": {k: predicted.get(k, 0) for k in letters},
        "rstd": float(np.std(list(recalls.values())) * 100) if len(recalls) > 1 else None,
    }


def consistency(items: list[Item], predictions, permuted) -> dict | None:
    """How often an item's answer survives reshuffling its choices.

    `permuted`: predictions on permuted copies (already mapped back). An item is consistent when
    the original and every copy give the same original letter; `copy_accuracy` is the accuracy over
    the copies (against the original item's gold letter).
    """
    by_item: dict[str, list[Prediction]] = defaultdict(list)
    for prediction in permuted:
        parsed = parse_perm_id(prediction.item_id)
        if parsed:
            by_item[parsed[0]].append(prediction)
    pairs = [(it, p) for it, p in paired(items, predictions) if by_item.get(it.id)]
    if not pairs:
        return None
    agree, copy_graded, flipped_letters = 0, [], Counter()
    for item, prediction in pairs:
        answers = {prediction.answer} | {c.answer for c in by_item[item.id]}
        if len(answers) == 1 and None not in answers:
            agree += 1
        for copy in by_item[item.id]:
            if item.answer is not None:
                copy_graded.append(bool(is_correct(item, copy)))
            if copy.answer != prediction.answer:
                flipped_letters[f"{prediction.answer}->{copy.answer}"] += 1
    return {
        "items": len(pairs),
        "copies": sum(len(by_item[it.id]) for it, _ in pairs),
        "consistency": agree / len(pairs),
        "copy_accuracy": sum(copy_graded) / len(copy_graded) if copy_graded else None,
        "changes": dict(flipped_letters.most_common(10)),
    }


# --- PriDe ---------------------------------------------------------------------------------------


def estimate_prior(items: list[Item], predictions, permuted) -> dict[int, list[float]]:
    """The model's prior over letters, per number of choices, from the cyclic shifts of a sample.

    For one sample item, the mean over its n presentations of log P(position) cancels the content
    (each choice sat at each position once), leaving the position prior; softmax of that is the
    item's prior estimate, and the priors of the sample items are averaged (PriDe, eq. 5-6).
    """
    shifts: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    by_id = predictions if isinstance(predictions, dict) else {p.item_id: p for p in predictions}
    for prediction in permuted:
        parsed = parse_perm_id(prediction.item_id)
        if parsed and parsed[1] in cyclic_orders(len(parsed[1])) and prediction.option_probs:
            shifts[parsed[0]][prediction.item_id] = position_probs(prediction, parsed[1])
    per_size: dict[int, list[np.ndarray]] = defaultdict(list)
    for item in items:
        n = len(item.choices)
        original = by_id.get(item.id)
        if original is None or not original.option_probs or len(shifts.get(item.id, {})) != n - 1:
            continue  # only complete sets of shifts cancel the content
        rows = [position_probs(original, list(range(n)))] + list(shifts[item.id].values())
        per_size[n].append(position_prior(np.array(rows)))
    return {n: [float(x) for x in np.mean(priors, axis=0)] for n, priors in sorted(per_size.items())}


def position_prior(rows: np.ndarray) -> np.ndarray:
    """One item's letter prior from its n cyclic presentations (rows: presentations, columns: the
    probability of each position): softmax of the mean log-probability per position (PriDe, eq. 5)."""
    logs = np.log(np.clip(np.asarray(rows, dtype=np.float64), 1e-12, None)).mean(axis=0)
    prior = np.exp(logs - logs.max())
    return prior / prior.sum()


def debias(prediction: Prediction, prior: list[float]) -> Prediction:
    """The prediction with its option probabilities divided by the letter prior and renormalised."""
    letters = [letter(i) for i in range(len(prior))]
    if set(prediction.option_probs) != set(letters):
        return prediction
    scores = np.array([prediction.option_probs[k] for k in letters]) / np.asarray(prior)
    scores = scores / scores.sum()
    answer = letters[int(np.argmax(scores))]
    return prediction.model_copy(
        update={"answer": answer, "option_probs": dict(zip(letters, map(float, scores), strict=True))}
    )


def debias_summary(items: list[Item], predictions, permuted, sample_size: int) -> dict | None:
    """The estimated prior, and what dividing it out does to accuracy, RStd and the letters."""
    by_id = predictions if isinstance(predictions, dict) else {p.item_id: p for p in predictions}
    priors = estimate_prior(items, by_id, permuted)
    if not priors:
        return None
    corrected, changed = {}, 0
    for item, prediction in paired(items, by_id):
        prior = priors.get(len(item.choices))
        new = debias(prediction, prior) if prior and prediction.error is None else prediction
        changed += new.answer != prediction.answer
        corrected[item.id] = new
    return {
        "sample_size": sample_size,
        "prior": {str(n): dict(zip((letter(i) for i in range(n)), p, strict=True)) for n, p in priors.items()},
        "accuracy": accuracy_summary(items, corrected),
        "changed": changed,
        "position": position_summary(items, corrected),
    }
