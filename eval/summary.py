"""Everything a run is scored by, gathered into the one dict that becomes metrics.json.

Scores are computed over the items the run was asked for (the split, cut by --limit) that have a
prediction; items still pending (a run stopped early) are counted apart, never as wrong. The answer
metrics (accuracy, breakdowns, position bias) are left out of a run that answered nothing: the
agent's misconception-only runs on Eedi and MAP, where the right answer is given.
"""

from __future__ import annotations

from mcqa.eval.bias import consistency, debias_summary, position_summary
from mcqa.eval.metrics import (
    accuracy_summary,
    answers_questions,
    breakdown,
    confidence_summary,
    flip_ledger,
    is_correct,
    map_competition_summary,
    misconception_summary,
    paired,
    tools_summary,
)
from mcqa.types import Item, Prediction

WORST_ITEMS = 20


def worst_items(items: list[Item], predictions: dict[str, Prediction], n: int = WORST_ITEMS) -> list[dict]:
    """The most confident wrong answers: where the model was surest and still wrong, first.

    Confidence is the option probability of the final answer, as the solver's first answer step
    scored it; an answer that verify/reconsider changed shows its flips beside it.
    """
    wrong = []
    for item, prediction in paired(items, predictions):
        if item.answer is None or prediction.answer is None or is_correct(item, prediction):
            continue
        wrong.append(
            {
                "item_id": item.id,
                "question": item.question,
                "answer": prediction.answer,
                "gold": item.answer,
                "confidence": prediction.option_probs.get(prediction.answer),
                "gold_probability": prediction.option_probs.get(item.answer),
                "answer_text": item.choice(prediction.answer),
                "gold_text": item.choice(item.answer),
                "subject": item.subject,
                "trace_id": prediction.trace_id,
                "flips": prediction.flips,
            }
        )
    wrong.sort(key=lambda w: -(w["confidence"] or 0.0))
    return wrong[:n]


def summarize(
    items: list[Item],
    predictions: dict[str, Prediction],
    run: dict,
    shuffled: list[Prediction] = (),
    shifted: list[Prediction] = (),
    debias_sample_size: int = 0,
    seed: int = 0,
) -> dict:
    """metrics.json: `run` (what was asked, by whom) plus every metric that applies to these items.

    `shuffled`: predictions on randomly permuted copies (--permute); `shifted`: on the cyclic shifts
    of the debias sample (--debias); both mapped back to the original letters.
    """
    predicted = len(paired(items, predictions))
    answering = answers_questions(predictions)
    metrics: dict = {
        "run": {
            **run,
            "items": len(items),
            "predicted": predicted,
            "pending": len(items) - predicted,
            "answers_questions": answering,
        },
        "accuracy": accuracy_summary(items, predictions, seed=seed) if answering else None,
        "by_subject": breakdown(items, predictions, "subject", seed=seed) if answering else {},
        "by_construct": breakdown(items, predictions, "construct", seed=seed) if answering else {},
        "misconceptions": misconception_summary(items, predictions, k=25, seed=seed),
        "map_competition": map_competition_summary(items, predictions, k=3, seed=seed),
        "position": position_summary(items, predictions) if answering else None,
        "permutation": consistency(items, predictions, shuffled) if answering and shuffled else None,
        "debias": (debias_summary(items, predictions, shifted, debias_sample_size) if answering and shifted else None),
        "flips": flip_ledger(items, predictions),
        "tools": tools_summary(items, predictions, seed=seed) if answering else None,
        "confidence": confidence_summary(items, predictions) if answering else None,
        "errors": sum(p.error is not None for _, p in paired(items, predictions)),
        "worst": worst_items(items, predictions),
    }
    return metrics
