"""`mcqa index build|query`, `mcqa mine` and `mcqa eval retrieval` end to end, on a real slice of Eedi
(40 questions, 200 misconceptions) with the real MiniLM, in a temporary cache."""

import json
from pathlib import Path

import pytest
from test_rag_store import N_MISCONCEPTIONS, write_mini_eedi
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.datasets import load_misconceptions

runner = CliRunner()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The data folder; the cache points into a temporary folder for the whole module."""
    root = write_mini_eedi(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCQA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield str(root)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_build_save_and_query_a_misconception_index(mini, tmp_path):
    result = invoke("index", "build", "--data-dir", mini, "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert f"{N_MISCONCEPTIONS} vectors x 384" in flat(result.output)
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["count"] == N_MISCONCEPTIONS
    shortest = min(load_misconceptions("eedi", Path(mini)), key=lambda m: len(m.name))  # fits a table cell
    result = invoke("index", "query", shortest.name.lower(), "--from", tmp_path / "m", "-k", "3", "--data-dir", mini)
    assert result.exit_code == 0, result.output
    first_row = next(line for line in result.output.splitlines() if line.startswith("│"))
    assert f" {shortest.id} " in first_row and shortest.name in first_row
    result = invoke("index", "query", "x", "--from", tmp_path / "m", "--passage-template", "passage: {text}")
    assert result.exit_code == 2 and "was built with passage format" in flat(result.output)


def test_query_with_an_items_wrong_answer_uses_the_cached_index(mini):
    result = invoke(
        "index", "query", "--item", "0", "--wrong", "D", "--format", "hashes", "-k", "5", "--data-dir", mini
    )
    assert result.exit_code == 0, result.output
    assert "###" in result.output and "rank" in result.output
    assert invoke("index", "query", "--data-dir", mini).exit_code == 2  # no text and no item


def test_example_store_build_and_query_never_shows_the_item_itself(mini):
    result = invoke("index", "build", "--kind", "examples", "--split", "train", "--data-dir", mini)
    assert result.exit_code == 0, result.output
    assert "40 vectors" in result.output and "examples-eedi-train" in result.output.replace("\n", "")
    result = invoke(
        "index", "query", "--kind", "examples", "--split", "train", "--item", "3", "-k", "4", "--data-dir", mini
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    shown_ids = [row.split("│")[2].strip() for row in rows if row.split("│")[1].strip().isdigit()]
    assert len(shown_ids) == 4 and "3" not in shown_ids


def test_mine_writes_hard_negatives(mini, tmp_path):
    out = tmp_path / "negatives.jsonl"
    result = invoke(
        "mine", "--split", "fit", "--rank-min", "2", "--rank-max", "30", "-n", "3", "--out", out, "--data-dir", mini
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and f"{len(rows)} rows written" in flat(result.output)
    for row in rows:
        assert len(row["negatives"]) == 3 and row["positive_id"] not in row["negative_ids"]
        assert {"query", "positive", "negatives", "item_id", "letter"} <= set(row)


def test_eval_retrieval_prints_map_and_recall_per_format(mini, tmp_path):
    out = tmp_path / "retrieval.json"
    result = invoke(
        "eval",
        "retrieval",
        "--dataset",
        "eedi",
        "--split",
        "validation",
        "--format",
        "hashes",
        "--format",
        "category",
        "--out",
        out,
        "--data-dir",
        mini,
    )
    assert result.exit_code == 0, result.output
    assert "MAP@25" in result.output and "Recall@25" in result.output
    report = json.loads(out.read_text())
    assert [s["format"] for s in report["scores"]] == ["hashes", "category"]
    for score in report["scores"]:
        assert score["queries"] > 0 and 0 < score["map_at_k"] <= score["recall_at_k"] <= 1
    assert report["best"] in ("hashes", "category") and report["misconceptions"] == N_MISCONCEPTIONS


def test_eval_retrieval_refuses_bad_input(mini):
    result = invoke("eval", "retrieval", "--format", "nope", "--data-dir", mini)
    assert result.exit_code == 2 and "unknown query format" in flat(result.output)
    result = invoke("eval", "retrieval", "--split", "dev", "--data-dir", mini)
    assert result.exit_code == 2 and "fit, validation" in flat(result.output)
