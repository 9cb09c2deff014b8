"""`mcqa eval run` and `mcqa eval compare` end to end: the real solver (`build_solver`: the agent graph)
on the real tiny model and real ARC items, the files a run folder gets, resuming, refusing another
config, and comparing two runs."""

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.config import load_config

runner = CliRunner()
# The agent with only its answer node: the same solver path as a full run, fast enough for a test.
CONFIG = "llm:\n  model: smollm2-135m\n  n_threads: 1\n  n_ctx: 1024\nagent:\n  verify: false\n"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(CONFIG)
    return path


def run_args(out, config_file, data_root, *extra):
    return [
        "eval",
        "run",
        "--dataset",
        "arc_challenge",
        "--limit",
        "4",
        "--batch-size",
        "2",
        "--config",
        str(config_file),
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
        *extra,
    ]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, config_file, data_root):
    out = tmp_path_factory.mktemp("runs") / "a"
    result = runner.invoke(app, run_args(out, config_file, data_root, "--permute", "1", "--debias", "1"))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_a_run_folder_holds_config_predictions_metrics_and_reports(run_a):
    out, output = run_a
    assert "accuracy (95% CI)" in output and "permutation consistency" in output
    assert load_config(out / "config.yaml").llm.model == "smollm2-135m"  # the run can be repeated from it
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["item_id"] for p in predictions] == ["1", "2", "3", "4"]
    assert all(abs(sum(p["option_probs"].values()) - 1) < 1e-3 for p in predictions)
    copies = [json.loads(line)["item_id"] for line in (out / "permutations.jsonl").read_text().splitlines()]
    assert len(copies) == len(set(copies)) and 5 <= len(copies) <= 7  # 4 shuffles + 3 shifts, one may overlap
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy = metrics["accuracy"]
    assert accuracy["labelled"] == 4 and accuracy["correct"] == sum(p.get("correct", False) for p in predictions)
    assert accuracy["low"] <= accuracy["accuracy"] <= accuracy["high"]
    assert sum(metrics["position"]["predicted_letters"].values()) == 4
    assert metrics["permutation"]["items"] == 4 and 0 <= metrics["permutation"]["consistency"] <= 1
    assert sum(metrics["debias"]["prior"]["4"].values()) == pytest.approx(1.0)
    assert "reconsider" not in metrics["flips"]["by_step"]  # verify is off: only the shifts may flip an answer
    assert metrics["flips"]["flips"] == sum(len(p.get("flips", [])) for p in predictions)
    assert json.loads((out / "run.json").read_text())["source"] == {"dataset": "arc_challenge", "split": "test"}
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 2  # letters and flips, embedded
    assert not re.search(r'src="(?!data:)', html)  # nothing fetched from elsewhere: one self-contained file
    report = (out / "report.md").read_text()
    assert "| accuracy (95% CI) |" in report and "## Position bias" in report
    if metrics["worst"]:
        assert f"mcqa trace show {out} {metrics['worst'][0]['item_id']}" in report


def test_running_again_solves_nothing_and_keeps_the_file(run_a, config_file, data_root):
    out, _ = run_a
    before = (out / "predictions.jsonl").read_bytes()
    result = runner.invoke(app, run_args(out, config_file, data_root, "--permute", "1", "--debias", "1"))
    assert result.exit_code == 0, result.output
    copies = len((out / "permutations.jsonl").read_text().splitlines())
    assert "0 solved" in result.output and f"{4 + copies} already done" in result.output
    assert (out / "predictions.jsonl").read_bytes() == before


def test_another_config_on_the_same_run_is_refused(run_a, config_file, data_root):
    out, _ = run_a
    result = runner.invoke(app, run_args(out, config_file, data_root, "--model", "qwen2.5-coder-1.5b"))
    assert result.exit_code == 2
    assert "other settings" in result.output and "--force" in result.output


def test_compare_two_runs(run_a, data_root, tmp_path):
    out, _ = run_a
    run_b = tmp_path / "b"
    shutil.copytree(out, run_b, ignore=shutil.ignore_patterns(".lock", "traces.sqlite"))
    # B answers item 1 with its gold letter and item 2 with a wrong one: a known difference
    gold = {"1": "C", "2": "B"}  # ARC-Challenge rows 1 and 2
    rows = [json.loads(line) for line in (run_b / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        if row["item_id"] == "1":
            row["answer"], row["correct"] = gold["1"], True
        if row["item_id"] == "2":
            row["answer"], row["correct"] = "D", False
    (run_b / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    a_correct = {
        p["item_id"]: p["correct"] for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
    }
    b_correct = {r["item_id"]: r["correct"] for r in rows}
    expected = (sum(b_correct.values()) - sum(a_correct.values())) / 4

    result = runner.invoke(app, ["eval", "compare", str(out), str(run_b), "--json", "--data-dir", str(data_root)])
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    assert comparison["items_loaded"]
    accuracy = next(m for m in comparison["metrics"] if m["metric"] == "accuracy")
    assert accuracy["shared_items"] == 4
    assert accuracy["difference"]["value"] == pytest.approx(expected)
    assert accuracy["difference"]["low"] <= expected <= accuracy["difference"]["high"]

    table = runner.invoke(app, ["eval", "compare", str(out), str(run_b), "--data-dir", str(data_root)])
    assert table.exit_code == 0, table.output
    assert "accuracy" in table.output and "B - A" in table.output and "outside" in table.output
    missing = runner.invoke(app, ["eval", "compare", str(out), str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a run folder" in missing.output


def test_a_users_own_file_runs_and_compares_with_itself(tmp_path, config_file):
    quiz = tmp_path / "quiz.csv"
    quiz.write_text("Q,A,B,Gold\nIs water wet?,yes,no,A\nIs fire cold?,yes,no,B\n")
    out = tmp_path / "quiz-run"
    result = runner.invoke(
        app,
        [
            "eval",
            "run",
            "--dataset",
            str(quiz),
            "-c",
            "question=Q",
            "-c",
            "choices=A,B",
            "-c",
            "answer=Gold",
            "--config",
            str(config_file),
            "--out",
            str(out),
            "--no-traces",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["source"]["file"] == str(quiz.resolve())
    assert not (out / "traces.sqlite").exists()
    comparison = json.loads(runner.invoke(app, ["eval", "compare", str(out), str(out), "--json"]).output)
    assert comparison["items_loaded"]  # the file was found again through run.json
    accuracy = comparison["metrics"][0]
    assert accuracy["shared_items"] == 2 and accuracy["difference"]["value"] == 0 and not accuracy["significant"]


@pytest.fixture
def no_llm(tmp_path, monkeypatch):
    """A model cache (MCQA_CACHE_DIR) with no model in it and, as the LLM, a GGUF path in its empty `models/`:
    resolving or loading the LLM raises ModelNotFound. The embedder still resolves (a pip package's folder),
    and `indexes/` and `vectors/` are the usual cache's, so the Eedi indexes are not encoded again (minutes)."""
    from mcqa.config import cache_dir
    from mcqa.models import ModelNotFound, resolve

    shared, cache = cache_dir(), tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for part in ("indexes", "vectors"):
        (shared / part).mkdir(exist_ok=True)
        (cache / part).symlink_to(shared / part, target_is_directory=True)
    monkeypatch.setenv("MCQA_CACHE_DIR", str(cache))
    missing = cache / "models" / "absent.gguf"
    with pytest.raises(ModelNotFound):
        resolve(str(missing), "llm")
    assert resolve("minilm-l6", "embedder").is_dir()
    return missing


@pytest.mark.parametrize("dataset", ["eedi", "map"])
def test_a_misconception_run_never_touches_the_llm(dataset, no_llm, small_eedi, small_map, tmp_path):
    """Eedi and MAP runs (misconceptions only, their default config, votes and all) never resolve or load
    the LLM (eval/cli.py asks the agent's `resources_used`): with an LLM that cannot be found the run
    succeeds, and no item has an error (a node loading the LLM lazily would record one on every item)."""
    out = tmp_path / "run"
    data = small_eedi if dataset == "eedi" else small_map  # the label stores of the shared train files take minutes
    result = runner.invoke(
        app,
        [
            "eval",
            "run",
            "--dataset",
            dataset,
            "--split",
            "validation",
            "--limit",
            "3",
            "--model",
            str(no_llm),
            "--out",
            str(out),
            "--data-dir",
            str(data),
            "--no-traces",
        ],
    )
    assert result.exit_code == 0, result.output
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 and all(p.get("error") is None and p["misconceptions"] for p in predictions)
    assert all(p.get("answer") is None for p in predictions)  # no node asked for a letter
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["errors"] == 0
    assert (metrics["misconceptions"] if dataset == "eedi" else metrics["map_competition"])["rows"] > 0
    assert not any(no_llm.parent.iterdir())  # nothing was assembled or fetched into the model cache
