"""The listwise LLM reranker (`reranker: llm-list`) with the real tiny model on real Eedi items:
each candidate's score is its letter's probability in one prompt scored directly, the reversed list
averages with the plain one, and only the lettered head moves."""

import numpy as np
import pytest

from mcqa.agent.config import AgentConfig
from mcqa.agent.graph import Agent, default_tasks
from mcqa.agent.prompts import LIST_LETTERS, Prompts, rerank_list_chat
from mcqa.agent.solver import AgentSolver
from mcqa.agent.trace import replay
from mcqa.config import load_config
from mcqa.datasets import load_split


def config(**agent):
    agent = {"votes": 0, "tasks": ["misconceptions"], "reranker": "llm-list", "candidates": 8, "top_k": 8, **agent}
    return load_config(
        **{"llm.model": "smollm2-135m", "llm.n_ctx": 2048, **{f"agent.{k}": v for k, v in agent.items()}}
    )


@pytest.fixture(scope="module")
def eedi_item(data_root):
    return load_split("eedi", "train", data_root).items[0]


def run(tiny_llm, data_root, tmp_path, item, **agent):
    solver = AgentSolver(
        config(**agent), dataset="eedi", data_root=data_root, llm=tiny_llm, traces=tmp_path / "traces.sqlite"
    )
    assert solver.agent.nodes() == ["propose_misconceptions", "rerank", "finalize"]
    (p,) = solver([item])
    steps = {s["node"]: s["update"] for s in replay(solver.checkpointer, p.trace_id)}
    return solver, p, steps


@pytest.mark.parametrize("reverse", [False, True])
def test_list_scores_are_letter_probabilities_of_one_prompt(tiny_llm, data_root, tmp_path, eedi_item, reverse):
    solver, p, steps = run(tiny_llm, data_root, tmp_path, eedi_item, rerank_top=4, rerank_reverse=reverse)
    index = solver.resources.misconceptions
    candidates = steps["propose_misconceptions"]["candidates"][eedi_item.id]
    for letter, hits in candidates.items():
        head = [m for m, _ in hits[:4]]
        names = [index.name_of(m) for m in head]
        probs = np.exp(
            tiny_llm.score_options([rerank_list_chat(eedi_item, letter, names, Prompts())], LIST_LETTERS[:4])[0]
        )
        if reverse:
            back = np.exp(
                tiny_llm.score_options([rerank_list_chat(eedi_item, letter, names[::-1], Prompts())], LIST_LETTERS[:4])[
                    0
                ]
            )
            probs = (probs + back[::-1]) / 2
        expected = [head[k] for k in np.argsort(-probs, kind="stable")]
        assert p.misconceptions[letter][:4] == expected
        assert np.allclose(
            sorted(p.misconception_scores[letter][:4], reverse=True), sorted(probs, reverse=True), atol=2e-3
        )
        assert p.misconceptions[letter][4:] == [m for m, _ in hits[4:8]], "past the head: retrieval order"


def test_llm_list_needs_the_llm_not_a_cross_encoder():
    cfg = AgentConfig(votes=0, reranker="llm-list").for_dataset("eedi")
    used = Agent(cfg, None, default_tasks("eedi")).resources_used()
    assert "llm" in used and "cross_encoder" not in used


def test_list_chat_letters_every_candidate_after_the_question(eedi_item):
    chat = rerank_list_chat(eedi_item, "B", ["first idea", "second idea", "third idea"], Prompts())
    text = chat[-1]["content"]
    assert text.index(eedi_item.question.strip()[:30]) < text.index("A. first idea") < text.index("C. third idea")
    assert "(A, B, C)" in text


def test_a_head_longer_than_the_alphabet_is_cut_at_26(tiny_llm, data_root, tmp_path, eedi_item):
    """rerank_top 30: the first 26 candidates are lettered and reordered, the last 4 keep retrieval order."""
    _, p, steps = run(tiny_llm, data_root, tmp_path, eedi_item, rerank_top=30, candidates=30, top_k=30)
    for letter, hits in steps["propose_misconceptions"]["candidates"][eedi_item.id].items():
        retrieved = [m for m, _ in hits]
        assert sorted(p.misconceptions[letter][:26]) == sorted(retrieved[:26])
        assert p.misconceptions[letter][26:] == retrieved[26:30]
        assert all(0 <= s <= 1 for s in p.misconception_scores[letter][:26])
