"""The Python API (mcqa.api, exported at the top of the package): load, Agent, evaluate, compare, trace,
on the real tiny model (SmolLM2 through llama.cpp) and real ARC items. The CLI's `mcqa eval run` and
`mcqa eval compare` call the same functions, so their files are the same."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mcqa
from mcqa.eval.runner import RunError

TINY = {"model": "smollm2-135m", "threads": 1, "llm.n_ctx": 1024}


def test_import_mcqa_is_light_and_leaves_the_process_alone():
    """`import mcqa` neither loads the heavy libraries nor sets the hub flags for other libraries."""
    code = (
        "import os, sys; before = dict(os.environ); import mcqa; "
        "assert not {'torch', 'langgraph', 'llama_cpp', 'sentence_transformers'} & set(sys.modules), sys.modules.keys(); "
        "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
        "assert callable(mcqa.evaluate) and callable(mcqa.load)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_load_a_benchmark_or_a_file(tmp_path, data_root):
    items = mcqa.load("arc_challenge", split="test", limit=3, data_dir=data_root)
    assert len(items) == 3 and all(isinstance(it, mcqa.Item) for it in items)
    drawn = mcqa.load("arc_challenge", split="test", sample=5, seed=1, data_dir=data_root)
    assert len(drawn) == 5 and drawn != mcqa.load("arc_challenge", split="test", limit=5, data_dir=data_root)
    own = tmp_path / "mine.csv"
    own.write_text("qid,Question,A,B,Gold\nq1,Two plus two?,4,5,A\n")
    mine = mcqa.load(own, columns=["id=qid", "question=Question", "choices=A,B", "answer=Gold"])
    assert [(it.id, it.choices, it.answer) for it in mine] == [("q1", ["4", "5"], "A")]
    with pytest.raises(ValueError, match="unknown dataset"):
        mcqa.load("no_such_benchmark")


def test_configure_from_a_dict_a_file_or_keywords(tmp_path):
    given = {"agent": {"votes": 3}}
    cfg = mcqa.configure(given, **{"agent.prompts.verify": "Right?"}, agent__hubness=0.5, model="smollm2-135m")
    assert (cfg.agent.votes, cfg.agent.prompts.verify, cfg.agent.hubness) == (3, "Right?", 0.5)
    assert cfg.llm.model == "smollm2-135m" and given == {"agent": {"votes": 3}}  # the caller's dict is untouched
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  votes: 2\n")
    assert mcqa.configure(path, agent__votes=4).agent.votes == 4
    with pytest.raises(ValueError, match="unknown setting"):
        mcqa.configure(votes=1)


@pytest.fixture(scope="module")
def agent(tiny_llm):
    return mcqa.Agent(dataset="arc_challenge", llm=tiny_llm, **TINY)


def test_an_agent_solves_items_and_traces_one(agent, data_root):
    items = mcqa.load("arc_challenge", split="test", limit=3, data_dir=data_root)
    predictions = agent.solve(items)
    assert [p.item_id for p in predictions] == [it.id for it in items]
    assert all(
        p.answer in it.letters and p.correct == (p.answer == it.answer)
        for p, it in zip(predictions, items, strict=True)
    )
    trace = agent.trace(items[0])
    assert [s.node for s in trace.steps][:2] == ["input", "answer"]
    assert trace.prediction.answer == predictions[0].answer  # greedy: the same answer traced or batched
    assert trace.steps[1].prompts["answer"][items[0].id]  # the chat the answer node sent
    text = str(trace)
    assert "answer" in text and items[0].question[:30] in text
    html = trace._repr_html_()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "answer" in html


def test_evaluate_writes_the_cli_files_resumes_and_compares(tmp_path, data_root, tiny_llm):
    first = mcqa.evaluate("arc_challenge", "test", out=tmp_path / "a", limit=2, data_dir=data_root, **TINY)
    for name in ("config.yaml", "run.json", "predictions.jsonl", "metrics.json", "report.md", "report.html"):
        assert (tmp_path / "a" / name).is_file(), name
    assert first.metrics["accuracy"]["labelled"] == 2 and len(first.predictions) == 2
    frame = first.dataframe()
    assert list(frame["item_id"]) == list(first.predictions) and {"answer", "gold", "correct"} <= set(frame.columns)
    assert first.report_html.is_file() and "accuracy" in str(first)

    extended = mcqa.evaluate("arc_challenge", "test", out=tmp_path / "a", limit=4, data_dir=data_root, **TINY)
    meta = json.loads((tmp_path / "a" / "run.json").read_text())
    assert [c["solved"] for c in meta["invocations"]] == [2, 2]  # the second call solved only the new items
    assert len(extended.predictions) == 4

    with pytest.raises(RunError, match="agent.permutations: 1 -> 4"):
        mcqa.evaluate("arc_challenge", "test", out=tmp_path / "a", limit=4, data_dir=data_root,
                      **{**TINY, "agent.permutations": 4})  # fmt: skip
    other = mcqa.evaluate("arc_challenge", "test", out=tmp_path / "b", limit=4, data_dir=data_root,
                          **{**TINY, "agent.permutations": 4})  # fmt: skip
    comparison = mcqa.compare(extended, other.path, data_dir=data_root)
    row = comparison.row("accuracy")
    assert row["shared_items"] == 4
    assert row["difference"]["value"] == pytest.approx(
        other.metrics["accuracy"]["accuracy"] - extended.metrics["accuracy"]["accuracy"]
    )
    assert "accuracy" in str(comparison) and "<table>" in comparison._repr_html_()
    assert list(comparison.table().columns)[:2] == ["metric", "shared items"]
    reopened = mcqa.open_run(tmp_path / "b", data_dir=data_root)
    assert reopened.metrics["accuracy"] == other.metrics["accuracy"] and len(reopened.items) == 4


def test_the_readme_python_quickstart_runs(tmp_path, monkeypatch, data_root):
    """The README's Python quickstart, as written, on the tiny model (it names SmolLM2 itself)."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("<!-- quickstart:python -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # its runs/ folders go here
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_root))
    monkeypatch.setenv("MCQA_THREADS", "2")
    scope: dict = {}
    exec(compile(block, "README.md quickstart", "exec"), scope)  # noqa: S102 - the project's own README
    assert len(scope["predictions"]) == 20 and scope["trace"].prediction is not None
    assert (tmp_path / "runs" / "arc-zs" / "metrics.json").is_file()
    assert scope["cmp"].row("accuracy")["shared_items"] == 20
