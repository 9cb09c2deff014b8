"""Cloze scoring (`agent.scoring`), with the real tiny model: raw option log-likelihoods equal the
sum of the option's token log-probabilities read from one full evaluation (logits at every position),
and the agent's cloze / both distributions equal the ones computed from those scores directly."""

import numpy as np
import pytest

from mcqa.agent.graph import cloze_probs
from mcqa.agent.prompts import Prompts, cloze_chat
from mcqa.agent.solver import AgentSolver
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.llm.base import normalise_logprobs
from mcqa.prompts import answer_chat


def config(**agent):
    agent = {"permutations": 1, **agent}
    return load_config(
        **{
            "llm.model": "smollm2-135m",
            "llm.n_ctx": 2048,
            "agent.verify": False,
            **{f"agent.{k}": v for k, v in agent.items()},
        }
    )


@pytest.fixture(scope="module")
def arc_items(data_root):
    return [it for it in load_split("arc_challenge", "test", data_root).items if len(it.choices) == 4][:3]


def full_loglikelihood(tiny_llm, chat, option: str) -> float:
    """log P(option | chat) from a second llama.cpp context with logits at every position, evaluated
    from scratch in one pass: no prefix cache, no per-option rewinding."""
    import llama_cpp

    reference = llama_cpp.Llama(
        model_path=str(tiny_llm.path), n_ctx=2048, logits_all=True, verbose=False, n_threads=tiny_llm.config.n_threads
    )
    try:
        prompt = tiny_llm.prompt_tokens(chat, reserve=64)
        tokens = tiny_llm._tokens_of(option)
        reference.eval(prompt + tokens)
        total = 0.0
        for k, token in enumerate(tokens):
            row = np.asarray(reference.scores[len(prompt) - 1 + k], dtype=np.float64)
            total += (row - row.max() - np.log(np.exp(row - row.max()).sum()))[token]
        return total
    finally:
        reference.close()


def test_raw_option_loglikelihoods_equal_one_full_evaluation(tiny_llm, arc_items):
    item = arc_items[0]
    chat = cloze_chat(item, [], Prompts())
    raw = tiny_llm.score_options([chat], item.choices, normalise=False)[0]
    expected = [full_loglikelihood(tiny_llm, chat, choice) for choice in item.choices]
    assert np.allclose(raw, expected, atol=0.05), (raw, expected)
    assert all(r < 0 for r in raw)
    # normalised scores are the same raw scores, softmaxed over the options
    assert np.allclose(tiny_llm.score_options([chat], item.choices)[0], normalise_logprobs(raw), atol=1e-9)
    # and the letters path gives the same numbers either way, up to that normalisation
    letters = tiny_llm.score_options([answer_chat(item)], item.letters, normalise=False)[0]
    assert np.allclose(normalise_logprobs(letters), tiny_llm.score_options([answer_chat(item)], item.letters)[0])


def test_cloze_probs_rank_by_loglikelihood_per_byte():
    choices = ["a", "a much longer choice"]
    # 1 byte at -2.0 against 20 bytes at -10.0: per byte -2.0 vs -0.5, so the long one wins
    probs = cloze_probs(choices, np.array([-2.0, -10.0]))
    assert probs.argmax() == 1 and np.isclose(probs.sum(), 1.0)
    assert cloze_probs(["x", "y"], np.array([-1.0, -1.0])).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("scoring", ["cloze", "both"])
def test_agent_scoring_modes_use_the_choice_texts(tiny_llm, arc_items, scoring):
    solver = AgentSolver(config(scoring=scoring), dataset="arc_challenge", llm=tiny_llm)
    predictions = solver(arc_items)
    for item, prediction in zip(arc_items, predictions, strict=True):
        raw = tiny_llm.score_options([cloze_chat(item, [], Prompts())], item.choices, normalise=False)[0]
        expected = cloze_probs(item.choices, raw)
        letter = np.exp(tiny_llm.score_options([answer_chat(item)], item.letters)[0])
        if scoring == "both":
            expected = (expected + letter) / 2
        got = np.array([prediction.option_probs[x] for x in item.letters])
        assert np.allclose(got, expected, atol=2e-3), (scoring, got, expected)
        assert prediction.answer == item.letters[int(np.argmax(expected))]
        plain = item.letters[int(np.argmax(letter))]
        if scoring == "both" and plain != prediction.answer:
            assert prediction.flips == [f"cloze: {plain}->{prediction.answer}"]


def test_scoring_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="scoring"):
        config(scoring="guess")


def test_blanks_scores_fill_in_items_by_cloze_and_the_rest_by_letters(tiny_llm, data_root):
    """`blanks`: a CodeMMLU item with a blank in its program gets the cloze distribution, an item without
    one the letter distribution, and an item whose blank may be left empty (a choice with no text, which
    has no tokens to score) falls back to letters instead of failing."""
    train = load_split("codemmlu_fpt", "train", data_root).items
    blank = next(it for it in train if "_______________" in it.question and all(c.strip() for c in it.choices))
    plain_item = next(it for it in train if "____" not in it.question)
    empty = blank.model_copy(update={"id": "empty-choice", "choices": [*blank.choices[:-1], ""]})
    solver = AgentSolver(config(scoring="blanks", tools=[]), dataset="codemmlu_fpt", llm=tiny_llm)
    predictions = solver([blank, plain_item, empty])
    assert not any(p.error for p in predictions)
    for item, prediction, scored_by in zip(
        [blank, plain_item, empty], predictions, ["cloze", "letter", "letter"], strict=True
    ):
        if scored_by == "cloze":
            raw = tiny_llm.score_options([cloze_chat(item, [], Prompts())], item.choices, normalise=False)[0]
            expected = cloze_probs(item.choices, raw)
        else:
            expected = np.exp(tiny_llm.score_options([answer_chat(item)], item.letters)[0])
        got = np.array([prediction.option_probs[x] for x in item.letters])
        assert np.allclose(got, expected, atol=2e-3), (item.id, scored_by, got, expected)
