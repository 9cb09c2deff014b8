"""The tool nodes in the graph with the real tiny model, the real sandbox and real CodeMMLU / AQuA items:
a tool's choice verifies the answer, a disagreement is settled by the rule and recorded as a flip, and
what ran is in the prediction, the trace and the metrics."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mcqa.agent.compute import closest_choice
from mcqa.agent.solver import AgentSolver
from mcqa.agent.trace import render_step
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.eval.bias import permute_item
from mcqa.eval.metrics import tools_summary
from mcqa.eval.report import tool_rows
from mcqa.sandbox import missing_toolchain
from mcqa.types import Item

C_OUTPUT_ITEM = "k10196"  # "What will be the output of the following C code?": a=9,b=9; a=b++; b=a++; b=++b -> "10 10"


def config(**agent):
    agent = {"votes": 0, "permutations": 1, "verify": False, **agent}
    return load_config(
        **{"llm.model": "smollm2-135m", "llm.n_ctx": 2048, **{f"agent.{k}": v for k, v in agent.items()}}
    )


@pytest.fixture(scope="module")
def train(data_root):
    return {it.id: it for it in load_split("codemmlu_fpt", "train", data_root).items}


@pytest.fixture(scope="module")
def disagreeing(tiny_llm, train):
    """The C item, its choices rotated until the tiny model's first answer is not the program's output:
    the rotation moves the right choice's text to another letter, and the run's output follows the text."""
    if missing_toolchain("c"):
        pytest.skip("gcc is missing")
    item = train[C_OUTPUT_ITEM]
    solver = AgentSolver(config(tools=[]), dataset="codemmlu_fpt", llm=tiny_llm)
    n = len(item.choices)
    for shift in range(n):
        rotated = permute_item(item, [(k + shift) % n for k in range(n)]) if shift else item
        rotated = rotated.model_copy(update={"id": f"{item.id}-r{shift}"})
        if solver([rotated])[0].answer != rotated.answer:
            return rotated
    pytest.fail("the tiny model answered the item right under every rotation")


def test_execute_verifies_by_running_and_adopts_the_runs_choice(tiny_llm, train, disagreeing):
    other = next(it for it in train.values() if "SQL" in it.question)  # no program to run
    solver = AgentSolver(config(tools=["execute"]), dataset="codemmlu_fpt", llm=tiny_llm)
    assert solver.agent.nodes() == ["answer", "execute", "verify", "reconsider", "finalize"]
    fixed, untouched = solver([disagreeing, other])
    tool = fixed.tool
    assert (tool["tool"], tool["language"], tool["letter"]) == ("execute", "c", disagreeing.answer)
    assert "10 10" in tool["stdout"] and "printf" in tool["program"]
    first = max(fixed.option_probs, key=fixed.option_probs.get)
    assert first != disagreeing.answer and (tool["checked"], tool["agrees"]) == (first, False)
    assert fixed.flips == [f"execute: {first}->{disagreeing.answer}"]
    assert fixed.answer == disagreeing.answer and fixed.correct and fixed.verification == 1.0
    assert untouched.tool["status"] == "skipped" and untouched.tool["reason"] and untouched.tool["letter"] is None
    assert untouched.flips == [] and untouched.verification is None  # verify off: no P(TRUE) either

    summary = tools_summary([disagreeing, other], {p.item_id: p for p in (fixed, untouched)})
    assert summary["execute"]["items"] == 2 and summary["execute"]["named_a_choice"] == 1
    assert summary["execute"]["tool_accuracy"] == 1.0 and summary["execute"]["agreement"] == 0.0
    assert summary["accuracy_tool_named"]["correct"] == 1 and summary["accuracy_no_tool"]["labelled"] == 1
    rows = dict(tool_rows(summary))  # report.md, report.html and the CLI's summary
    assert (
        "ran on 1 of 2 items" in rows["tool `execute`"]
        and "named a choice on 1 (right 100.0%)" in rows["tool `execute`"]
    )
    assert rows["accuracy where a tool named or ruled out a choice"].endswith("on 1")


def test_fuse_keeps_a_confident_answer_and_adopt_does_not(tiny_llm, disagreeing):
    """`fuse` with weight 0 never moves the answer (no flip, the verdict stays failed); weight 1 is `adopt`."""
    kept = AgentSolver(
        config(tools=["execute"], tool_rule="fuse", tool_weight=0.0), dataset="codemmlu_fpt", llm=tiny_llm
    )([disagreeing])[0]
    assert kept.flips == [] and kept.answer != disagreeing.answer and kept.verification == 0.0
    moved = AgentSolver(
        config(tools=["execute"], tool_rule="fuse", tool_weight=1.0), dataset="codemmlu_fpt", llm=tiny_llm
    )([disagreeing])[0]
    assert moved.answer == disagreeing.answer and len(moved.flips) == 1


def test_compute_runs_the_models_program_and_maps_its_result(tiny_llm, data_root):
    items = load_split("aqua_rat", "dev", data_root).items[:3]
    text_item = Item(
        id="text", question="Which word is a noun?", choices=["run", "table", "quickly", "blue"], answer="B"
    )
    solver = AgentSolver(
        config(tools=["compute"], verify=True, program_tokens=96), dataset="aqua_rat", llm=tiny_llm, record_prompts=True
    )
    assert solver.agent.nodes() == ["answer", "compute", "verify", "reconsider", "finalize"]
    predictions = solver([*items, text_item])
    for item, p in zip(items, predictions[: len(items)], strict=True):
        tool = p.tool
        assert tool["tool"] == "compute" and tool["status"] in (
            "ok",
            "no program",
            "runtime_error",
            "timeout",
            "memory",
            "output_limit",
        )
        if tool["status"] == "ok" and tool["value"] is not None:
            assert tool["letter"] == closest_choice(item, tool["value"])[0]
        if tool["letter"]:
            assert p.verification in (0.0, 1.0) and p.answer == tool["letter"]
        else:
            assert 0 < p.verification < 1  # no tool verdict: P(TRUE) is the fallback
    text = predictions[-1]
    assert text.tool["status"] == "skipped" and "not numbers" in text.tool["reason"]


def test_trace_shows_the_program_its_output_and_the_verdict(tiny_llm, disagreeing):
    solver = AgentSolver(config(tools=["execute"]), dataset="codemmlu_fpt", llm=tiny_llm)
    updates = {}  # each node's first update: verify runs again after reconsider adopted the run's choice
    for chunk in solver.graph.stream({"items": [disagreeing.model_dump()]}, stream_mode="updates"):
        for node, update in chunk.items():
            updates.setdefault(node, update)
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)
    for node in ("execute", "verify"):
        render_step(console, node, updates[node])
    shown = buffer.getvalue()
    assert "tool `execute` (c): ok" in shown and "printf" in shown and "stdout: 10 10" in shown
    assert "verification: tool `execute` disagrees" in shown


def test_compare_splits_accuracy_by_where_a_tool_named_a_choice():
    from mcqa.eval.compare import _split_by_tool
    from mcqa.types import Prediction

    plain = {i: Prediction(item_id=i, answer="A") for i in ("x", "y", "z")}
    tooled = {
        **plain,
        "y": Prediction(item_id="y", answer="B", tool={"tool": "execute", "letter": "B"}),
        "z": Prediction(item_id="z", answer="A", tool={"tool": "execute", "letter": None}),
    }
    scores = {"accuracy": {"x": (1.0, 1.0), "y": (0.0, 1.0), "z": (1.0, 1.0)}}
    _split_by_tool(scores, plain, tooled)
    assert scores["accuracy (tool named or ruled out a choice)"] == {"y": (0.0, 1.0)}
    assert scores["accuracy (no tool)"] == {"x": (1.0, 1.0), "z": (1.0, 1.0)}
    untouched = {"accuracy": {"x": (1.0, 1.0)}}
    _split_by_tool(untouched, plain, plain)
    assert list(untouched) == ["accuracy"]  # no tool in either run: no subset rows
