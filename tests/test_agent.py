"""The agent graph end to end with the real tiny model (and, for misconceptions, the real embedder
and FAISS): answer-only, misconception-only and both; a trace stepped node by node; a replay."""

import pytest
from rich.console import Console

from mcqa.agent.config import AgentConfig
from mcqa.agent.graph import RESOURCES, Agent, default_tasks, wrong_letters
from mcqa.agent.solver import AgentSolver, open_checkpointer
from mcqa.agent.trace import export_jsonl, for_item, replay, step_through
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.types import Item


def config(**agent):
    """Votes off unless asked for: they need a label store of the whole train split (tests/test_rag_votes.py);
    the plain answer prompt (permutations 1) unless asked for: tests/test_agent_debias.py covers the shifts;
    P(TRUE) verification on (off by default) and no tools (tests/test_agent_tools.py), since these tests
    follow the P(TRUE) verify -> reconsider path."""
    agent = {"votes": 0, "permutations": 1, "verify": True, "tools": [], **agent}
    return load_config(
        **{"llm.model": "smollm2-135m", "llm.n_ctx": 2048, **{f"agent.{k}": v for k, v in agent.items()}}
    )


@pytest.fixture(scope="module")
def code_items(data_root):
    return load_split("codemmlu_fpt", "train", data_root).items[:4]


def test_answer_only_graph_verifies_and_records_flips(tiny_llm, code_items):
    # margin 1.0 opens the gate for every failed verification, so reconsider really runs
    solver = AgentSolver(
        config(reconsider_rounds=1, reconsider_margin=1.0, reconsider_below=0.99), dataset="codemmlu_fpt", llm=tiny_llm
    )
    assert solver.agent.nodes() == ["answer", "verify", "reconsider", "finalize"]
    predictions = solver(code_items)
    assert [p.item_id for p in predictions] == [it.id for it in code_items]
    for item, p in zip(code_items, predictions, strict=True):
        assert abs(sum(p.option_probs.values()) - 1) < 1e-3
        assert 0 <= p.verification <= 1
        assert p.correct == (p.answer == item.answer)
        # P(TRUE) < 0.99 for this tiny model, so every answer was reconsidered once and the flip is recorded
        assert len(p.flips) == 1
        old, new = p.flips[0].split("->")
        assert old != new and new == p.answer
        assert p.misconceptions == {}


def test_verify_reuses_the_answer_prompt_state(tiny_llm, code_items, forget_prompts):
    """With the cache emptied first, every restored state comes from this run: the answer prompts of
    a batch share only the system prompt (the live cache holds it), so the restores are the verify
    prompts starting from their item's saved answer state."""
    forget_prompts(tiny_llm)
    before = dict(tiny_llm.stats)
    AgentSolver(config(reconsider_rounds=0), dataset="codemmlu_fpt", llm=tiny_llm)(code_items)
    restored = tiny_llm.stats["restored_states"] - before.get("restored_states", 0)
    assert restored >= len(code_items) - 1, "each verify prompt should start from its item's saved answer state"


def test_gate_closed_means_no_reconsider(tiny_llm, code_items):
    solver = AgentSolver(config(reconsider_rounds=1, reconsider_margin=0.0), dataset="codemmlu_fpt", llm=tiny_llm)
    assert all(p.flips == [] for p in solver(code_items))


def test_wrong_letters_of_interest():
    eedi_like = Item(id="1", question="q", choices=["a", "b", "c", "d"], answer="B")
    assert wrong_letters(eedi_like, None) == ["A", "C", "D"]
    unlabelled = Item(id="2", question="q", choices=["a", "b", "c"])
    assert wrong_letters(unlabelled, "C") == ["A", "B"]
    map_like = Item(id="3", question="q", choices=["a", "b"], answer="A", chosen="B")
    assert wrong_letters(map_like, None) == ["B"]


def test_step_through_pauses_before_each_node_and_replays(tmp_path, tiny_llm, code_items):
    db = tmp_path / "traces.sqlite"
    solver = AgentSolver(
        config(reconsider_rounds=0),
        dataset="codemmlu_fpt",
        llm=tiny_llm,
        traces=db,
        record_prompts=True,
        interrupt=True,
    )
    asked = []

    def press_enter(prompt):
        asked.append(prompt.split()[1])
        return ""

    console = Console(record=True, width=120)
    final = step_through(solver, code_items[0], console, ask=press_enter)
    assert asked == ["answer", "verify", "finalize"], "one pause before every node"
    assert final["item_id"] == code_items[0].id and final["answer"] in "ABCD"
    shown = console.export_text()
    assert "probability" in shown and "P(TRUE)" in shown and "final answer" in shown

    # the saved trace replays from SQLite alone: no model, no graph
    steps = replay(open_checkpointer(db), f"{solver.run_id}-00001")
    assert [s["node"] for s in steps] == ["input", "answer", "verify", "finalize"]
    assert steps[1]["update"]["answers"][code_items[0].id]["letter"] in "ABCD"
    assert "prompts" in steps[1]["update"]
    assert steps[-1]["update"]["predictions"][0] == final
    export_jsonl(steps, tmp_path / "trace.jsonl")
    assert len((tmp_path / "trace.jsonl").read_text().splitlines()) == 4


def test_quit_stops_the_trace(tiny_llm, code_items, tmp_path):
    solver = AgentSolver(config(), dataset="codemmlu_fpt", llm=tiny_llm, traces=tmp_path / "t.sqlite", interrupt=True)
    assert step_through(solver, code_items[1], Console(file=open("/dev/null", "w")), ask=lambda _: "q") is None


def test_for_item_filters_a_batch_update():
    update = {
        "answers": {"1": {"letter": "A"}, "2": {"letter": "B"}},
        "pending": ["1", "2"],
        "predictions": [{"item_id": "1"}, {"item_id": "2"}],
        "prompts": {"think": {"1/B": "x", "2/A": "y"}},
    }
    assert for_item(update, "2") == {
        "answers": {"2": {"letter": "B"}},
        "pending": ["2"],
        "predictions": [{"item_id": "2"}],
        "prompts": {"think": {"2/A": "y"}},
    }


# -- misconceptions: the real MiniLM embedder and a real FAISS index over the Eedi catalogue ---------


@pytest.fixture(scope="module")
def eedi_items(data_root):
    items = load_split("eedi", "train", data_root).items
    return [it for it in items if len(it.misconceptions) >= 2][:2]


def test_misconception_only_needs_no_llm(eedi_items, data_root):
    solver = AgentSolver(config(candidates=30, top_k=25), dataset="eedi", data_root=data_root)
    assert solver.agent.nodes() == ["propose_misconceptions", "finalize"] and not solver.agent.uses_llm
    predictions = solver(eedi_items)
    assert "llm" not in solver.resources.__dict__, "misconception-only must not load the LLM"
    loaded = set(solver.resources.__dict__) & set(RESOURCES)
    assert loaded == solver.agent.resources_used() == {"embedder", "misconceptions", "hub_penalties"}
    for item, p in zip(eedi_items, predictions, strict=True):
        assert p.answer is None and p.correct is None
        assert sorted(p.misconceptions) == sorted(x for x in item.letters if x != item.answer)
        for letter, ids in p.misconceptions.items():
            assert len(ids) == 25 and len(set(ids)) == 25
            scores = p.misconception_scores[letter]
            assert scores == sorted(scores, reverse=True), "retrieval order is best first"


def test_resources_used_follow_the_nodes_of_the_config():
    """What bundles, Kaggle runs and eval runs load: MAP and Eedi by default never the LLM."""

    def used(dataset, **agent):
        cfg = AgentConfig(**agent).for_dataset(dataset)
        return Agent(cfg, None, cfg.tasks or default_tasks(dataset)).resources_used()

    assert used("codemmlu_fpt") == {"llm"}
    assert used("codemmlu_fpt", few_shot=2) == {"llm", "examples", "embedder"}
    assert used("eedi") == {"embedder", "misconceptions", "hub_penalties", "labels"}
    assert used("eedi", votes=0, hubness=0) == {"embedder", "misconceptions"}
    assert used("map") == {"embedder", "misconceptions", "labels", "classifier", "ngram"}
    assert used("map", ngram="none") == {"embedder", "misconceptions", "labels", "classifier"}
    assert used("map", votes=0) == {"embedder", "misconceptions"}  # the classifiers join the votes only
    assert (
        used("eedi", think=True)
        == used("eedi", reranker="llm")
        == {"llm", "embedder", "misconceptions", "hub_penalties", "labels"}
    )
    assert used("eedi", reranker="/models/ce", hubness=0) == {"cross_encoder", "embedder", "misconceptions", "labels"}
    assert used("eedi", tasks=["answer"]) == {"llm"}  # few-shot off: no embedder
    for dataset in ("eedi", "map", "codemmlu_fpt"):
        cfg = AgentConfig().for_dataset(dataset)
        agent = Agent(cfg, None, default_tasks(dataset))
        assert agent.uses_llm == ("llm" in agent.resources_used()) and agent.resources_used() <= set(RESOURCES)


def test_both_tasks_with_think_and_llm_reranker(tiny_llm, eedi_items, data_root, tmp_path):
    cfg = config(
        tasks=["answer", "misconceptions"],
        think=True,
        think_tokens=16,
        reranker="llm",
        rerank_top=3,
        candidates=10,
        top_k=10,
        reconsider_rounds=0,
    )
    solver = AgentSolver(
        cfg, dataset="eedi", data_root=data_root, llm=tiny_llm, traces=tmp_path / "t.sqlite", record_prompts=True
    )
    assert solver.agent.nodes() == ["answer", "verify", "think", "propose_misconceptions", "rerank", "finalize"]
    assert solver.agent.uses_llm
    (item,) = eedi_items[:1]
    (p,) = solver([item])
    assert p.answer in item.letters and p.correct == (p.answer == item.answer)
    steps = {s["node"]: s["update"] for s in replay(solver.checkpointer, p.trace_id)}
    explanations = steps["think"]["explanations"][item.id]
    assert set(explanations) == set(p.misconceptions) and all(isinstance(t, str) for t in explanations.values())
    # the explanation was appended to the retrieval query
    queries = steps["propose_misconceptions"]["prompts"]["propose_misconceptions"]
    assert all(explanations[key.split("/")[1]] in q for key, q in queries.items())
    for letter, ids in p.misconceptions.items():
        retrieved = [m for m, _ in steps["propose_misconceptions"]["candidates"][item.id][letter]]
        assert sorted(ids[:3]) == sorted(retrieved[:3]), "the reranker reorders only its top 3"
        assert ids[3:] == retrieved[3:10], "the rest keep retrieval order"
        reranked = p.misconception_scores[letter][:3]
        assert reranked == sorted(reranked, reverse=True) and all(0 <= s <= 1 for s in reranked)


def test_map_style_item_explains_the_students_choice(data_root):
    items = [it for it in load_split("map", "train", data_root).items[:400] if it.misconceptions][:2]
    (p, q) = AgentSolver(config(candidates=5, top_k=3), dataset="map", data_root=data_root)(items)
    assert list(p.misconceptions) == [items[0].chosen] and len(p.misconceptions[items[0].chosen]) == 3


def test_rerank_weight_zero_keeps_retrieval_order_and_fusion_mixes_both(tiny_llm, eedi_items, data_root, tmp_path):
    """With `rerank_weight: 0` the fused score is z(retrieval) alone, so the real LLM reranker's
    scores cannot move anything; a large weight follows the reranker's own order."""

    def ranked(weight):
        cfg = config(
            tasks=["misconceptions"], reranker="llm", rerank_top=4, rerank_weight=weight, candidates=8, top_k=8
        )
        solver = AgentSolver(
            cfg, dataset="eedi", data_root=data_root, llm=tiny_llm, traces=tmp_path / f"{weight}.sqlite"
        )
        (p,) = solver(eedi_items[:1])
        return p, {s["node"]: s["update"] for s in replay(solver.checkpointer, p.trace_id)}

    kept, steps = ranked(0.0)
    alone, _ = ranked(None)
    following, _ = ranked(1000.0)
    heads = {
        x: [m for m, _ in steps["propose_misconceptions"]["candidates"][eedi_items[0].id][x]][:4]
        for x in kept.misconceptions
    }
    assert any(alone.misconceptions[x][:4] != head for x, head in heads.items()), (
        "the reranker alone must reorder some head, or weight 0 proves nothing"
    )
    for letter, ids in kept.misconceptions.items():
        retrieved = [m for m, _ in steps["propose_misconceptions"]["candidates"][eedi_items[0].id][letter]]
        assert ids == retrieved, "weight 0: the reranker cannot change the order"
        assert following.misconceptions[letter][:4] == alone.misconceptions[letter][:4], (
            "a dominant weight orders the head as the reranker alone does"
        )
        assert sorted(alone.misconceptions[letter][:4]) == sorted(retrieved[:4])
