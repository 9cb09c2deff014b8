"""The llama.cpp backend with the real SmolLM2-135M GGUF."""

import numpy as np
import pytest

from mcqa.llm import choices_grammar, normalise_logprobs
from mcqa.prompts import answer_chat
from mcqa.types import Item

ITEMS = [
    Item(id="1", question="What is 2 + 2?", choices=["3", "4", "5", "22"], answer="B"),
    Item(id="2", question="Which planet is known as the Red Planet?", choices=["Venus", "Mars", "Jupiter"], answer="B"),
    Item(id="3", question="What colour is the sky on a clear day?", choices=["Blue", "Green"], answer="A"),
]


def test_score_options_is_a_distribution_per_chat(tiny_llm):
    chats = [answer_chat(it) for it in ITEMS]
    scores = tiny_llm.score_options(chats, ["A", "B"])
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, rtol=1e-9)


def test_cached_prefix_gives_the_same_scores_as_a_cold_start(tiny_llm, forget_prompts):
    """The KV-cache reuse must not change a single score: compare with a fully reset context, where
    nothing is restored and nothing comes from the cache (stats deltas measured around each call)."""
    chats = [answer_chat(it) for it in ITEMS]
    forget_prompts(tiny_llm)
    before = dict(tiny_llm.stats)
    warm = tiny_llm.score_options(chats, ["A", "B", "C"])
    warm_cached = tiny_llm.stats["cached_tokens"] - before.get("cached_tokens", 0)
    assert warm_cached > 0, "the shared system prompt should come from the cache"
    cold = []
    for chat in chats:
        forget_prompts(tiny_llm)
        before = dict(tiny_llm.stats)
        cold.append(tiny_llm.score_options([chat], ["A", "B", "C"])[0])
        assert tiny_llm.stats["cached_tokens"] == before.get("cached_tokens", 0), "a cold run reused a cache"
        assert tiny_llm.stats["restored_states"] == before.get("restored_states", 0), "a cold run restored a state"
    np.testing.assert_allclose(warm, np.array(cold), atol=1e-4)


def test_multi_token_options_are_scored_whole(tiny_llm):
    chat = [{"role": "user", "content": "Is 7 a prime number? Reply TRUE or FALSE."}]
    assert len(tiny_llm._tokens_of("TRUE FALSE TRUE")) > 1
    scores = tiny_llm.score_options([chat], ["TRUE", "FALSE", "TRUE FALSE TRUE"])
    np.testing.assert_allclose(np.exp(scores).sum(), 1.0)
    # a longer continuation that starts like "TRUE" can only be less likely than "TRUE" itself
    assert scores[0, 2] < scores[0, 0]
    again = tiny_llm.score_options([chat], ["TRUE", "FALSE", "TRUE FALSE TRUE"])
    np.testing.assert_allclose(scores, again, atol=1e-6)


def test_constrained_generation_agrees_with_the_scores(tiny_llm):
    """Greedy decoding restricted to the letters must pick the letter with the best score: two
    independent paths through llama.cpp (logits read by us, grammar sampling by llama.cpp)."""
    chats = [answer_chat(it) for it in ITEMS]
    letters = ["A", "B"]
    scores = tiny_llm.score_options(chats, letters)
    generated = tiny_llm.generate(chats, choices=letters)
    assert generated == [letters[int(np.argmax(row))] for row in scores]


def test_grammar_and_free_generation(tiny_llm):
    chat = [{"role": "user", "content": "Is the earth round? Answer TRUE or FALSE."}]
    (verdict,) = tiny_llm.generate([chat], grammar='root ::= "TRUE" | "FALSE"', max_tokens=4)
    assert verdict in {"TRUE", "FALSE"}
    (text,) = tiny_llm.generate([[{"role": "user", "content": "Say hello."}]], max_tokens=8)
    assert isinstance(text, str) and text.strip()
    assert tiny_llm.stats["generated_tokens"] > 0


def test_overlong_prompt_is_truncated_and_counted(tiny_llm):
    before = tiny_llm.stats["truncated_prompts"]
    chat = [{"role": "user", "content": "word " * 3000 + "Answer A or B."}]
    scores = tiny_llm.score_options([chat], ["A", "B"])
    assert np.isfinite(scores).all()
    assert tiny_llm.stats["truncated_prompts"] == before + 1


def test_helpers():
    assert choices_grammar(["A", 'say "hi"']) == 'root ::= "A" | "say \\"hi\\""'
    with pytest.raises(ValueError):
        choices_grammar([])
    rows = normalise_logprobs(np.array([[0.0, 0.0], [10.0, -10.0]]))
    np.testing.assert_allclose(np.exp(rows), [[0.5, 0.5], [1 / (1 + np.exp(-20)), np.exp(-20) / (1 + np.exp(-20))]])
