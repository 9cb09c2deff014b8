"""The agent graph end to end with the real tiny model (and, for misconceptions, the real embedder
and FAISS): answer-only, misconception-only and both; a trace stepped node by node; a replay."""

from pathlib import Path

import pytest
from rich.console import Console

from mcqa.agent.graph import wrong_letters
from mcqa.agent.solver import AgentSolver, open_checkpointer
from mcqa.agent.trace import export_jsonl, for_item, replay, step_through
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.types import Item


def config(**agent):
    return load_config(**{"llm.model": "smollm2-135m", "llm.n_ctx": 2048, **{f"agent.{k}": v for k, v in agent.items()}})


@pytest.fixture(scope="module")
def code_items(data_root):
    return load_split("codemmlu_fpt", "train", data_root).items[:4]


def test_answer_only_graph_verifies_and_records_flips(tiny_llm, code_items):
    # margin 1.0 opens the gate for every failed verification, so reconsider really runs
    solver = AgentSolver(config(reconsider_margin=1.0, reconsider_below=0.99), dataset="codemmlu_fpt", llm=tiny_llm)
    assert solver.agent.nodes() == ["answer", "verify", "reconsider", "finalize"]
    predictions = solver(code_items)
    assert [p.item_id for p in predictions] == [it.id for it in code_items]
    for item, p in zip(code_items, predictions):
        assert abs(sum(p.option_probs.values()) - 1) < 1e-3
        assert 0 <= p.verification <= 1
        assert p.correct == (p.answer == item.answer)
        # P(TRUE) < 0.99 for this tiny model, so every answer was reconsidered once and the flip is recorded
        assert len(p.flips) == 1
        old, new = p.flips[0].split("->")
        assert old != new and new == p.answer
        assert p.misconceptions == {}


def test_verify_reuses_the_answer_prompt_state(tiny_llm, code_items):
    before = dict(tiny_llm.stats)
    AgentSolver(config(reconsider_rounds=0), dataset="codemmlu_fpt", llm=tiny_llm)(code_items)
    restored = tiny_llm.stats["restored_states"] - before.get("restored_states", 0)
    assert restored >= len(code_items) - 1, "each verify prompt should start from its item's saved answer state"


def test_gate_closed_means_no_reconsider(tiny_llm, code_items):
    solver = AgentSolver(config(reconsider_margin=0.0), dataset="codemmlu_fpt", llm=tiny_llm)
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
    solver = AgentSolver(config(reconsider_rounds=0), dataset="codemmlu_fpt", llm=tiny_llm, traces=db,
                         record_prompts=True, interrupt=True)
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
    update = {"answers": {"1": {"letter": "A"}, "2": {"letter": "B"}}, "pending": ["1", "2"],
              "predictions": [{"item_id": "1"}, {"item_id": "2"}], "prompts": {"think": {"1/B": "x", "2/A": "y"}}}
    assert for_item(update, "2") == {"answers": {"2": {"letter": "B"}}, "pending": ["2"],
                                     "predictions": [{"item_id": "2"}], "prompts": {"think": {"2/A": "y"}}}
