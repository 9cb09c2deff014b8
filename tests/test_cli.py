"""The `mcqa` command end to end, with the real tiny model and the real data files."""

import csv
import json
import re

from typer.testing import CliRunner

from mcqa.cli import app

runner = CliRunner()


def test_help_explains_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "models", "solve"):
        assert command in result.output
    result = runner.invoke(app, ["solve", "--help"])
    assert "--limit" in result.output and "--threads" in result.output


def test_data_list_shows_counts_and_skip_reasons(data_root):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "codemmlu_fpt" in result.output and "fewer than 2" in result.output
    # the eedi train row shows one item per row of the file, counted here without the adapter
    with (data_root / "eedi" / "train.csv").open(newline="", encoding="utf-8") as handle:
        rows = sum(1 for _ in csv.DictReader(handle))
    (shown,) = re.findall(r"eedi\W+train\W+(\d+)", result.output)
    assert rows > 0 and int(shown) == rows


def test_data_show_an_eedi_item(data_root):
    result = runner.invoke(app, ["data", "show", "eedi", "--split", "train", "--n", "1", "--data-dir", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "misconception" in result.output and "correct" in result.output


def test_unknown_dataset_is_a_clean_error():
    result = runner.invoke(app, ["data", "show", "nope"])
    assert result.exit_code == 2
    assert "unknown dataset" in result.output


def test_solve_writes_predictions_and_prints_accuracy(tmp_path, data_root):
    out = tmp_path / "preds.jsonl"
    result = runner.invoke(
        app,
        [
            "solve",
            "--dataset",
            "codemmlu_fpt",
            "--split",
            "train",
            "--limit",
            "5",
            "--model",
            "smollm2-135m",
            "--threads",
            "2",
            "--out",
            str(out),
            "--data-dir",
            str(data_root),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert line["answer"] in line["option_probs"]
        assert abs(sum(line["option_probs"].values()) - 1) < 1e-3
    assert "accuracy" in result.output and "/5)" in result.output


def test_solve_a_users_own_file(tmp_path):
    path = tmp_path / "quiz.csv"
    path.write_text("Q,A,B,Gold\nIs water wet?,yes,no,A\nIs fire cold?,yes,no,B\n")
    out = tmp_path / "quiz.jsonl"
    result = runner.invoke(
        app,
        [
            "solve",
            "--dataset",
            str(path),
            "-c",
            "question=Q",
            "-c",
            "choices=A,B",
            "-c",
            "answer=Gold",
            "--model",
            "smollm2-135m",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 2


def test_solve_with_a_missing_model_says_so(tmp_path, data_root):
    result = runner.invoke(
        app,
        [
            "solve",
            "--dataset",
            "arc_challenge",
            "--limit",
            "1",
            "--model",
            "no-such-model",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
    )
    assert result.exit_code == 2
    assert "no llm named 'no-such-model'" in result.output


def test_bad_config_key_is_refused(tmp_path, data_root):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("llm:\n  modle: smollm2-135m\n")
    result = runner.invoke(
        app, ["solve", "--dataset", "arc_challenge", "--config", str(cfg), "--data-dir", str(data_root)]
    )
    assert result.exit_code == 2
    assert "modle" in result.output
