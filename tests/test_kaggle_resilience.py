"""A Kaggle run always writes a valid submission: an item the real backend fails on, and a deadline
reached mid-run, both end with a submission the validator accepts and the fallbacks counted.

The bundle is a real one (the tiny SmolLM2 GGUF, answer only), built once for the module; the
competition folder holds the first six rows of the shared CodeMMLU test file.
"""

from __future__ import annotations

import csv
import itertools
import json

import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.datasets import get_spec
from mcqa.kaggle.formats import get_task
from mcqa.kaggle.run import main, run
from mcqa.kaggle.validate import validate
from mcqa.llm.llamacpp import LlamaCppLLM
from mcqa.solve import Deadline

runner = CliRunner()
TEST_ROWS = 6  # three batches of two


@pytest.fixture(scope="module")
def competition(tmp_path_factory, data_root):
    """A CodeMMLU competition folder: the first rows of the real test file."""
    task = get_task("codemmlu")
    folder = tmp_path_factory.mktemp("input") / "codemmlu"
    folder.mkdir()
    with (data_root / "codemmlu_fpt" / task.test_file).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        rows = [next(reader) for _ in range(TEST_ROWS + 1)]
    with (folder / task.test_file).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return folder


@pytest.fixture(scope="module")
def items(competition):
    items = get_spec("codemmlu_fpt").loader(competition, "test").items
    assert len(items) == TEST_ROWS
    return items


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, data_root):
    """A real bundle without wheels: the tiny GGUF, answer only, batches of two."""
    folder = tmp_path_factory.mktemp("bundle")
    config = folder / "cfg.yaml"
    config.write_text(
        "llm:\n  model: smollm2-135m\n  n_ctx: 1024\n  n_threads: 1\nagent:\n  verify: false\n  batch_size: 2\n"
    )
    result = runner.invoke(
        app,
        [
            "kaggle",
            "bundle",
            "--task",
            "codemmlu",
            "--out",
            str(folder / "b"),
            "--no-wheels",
            "--config",
            str(config),
            "--data-dir",
            str(data_root),
        ],
    )
    assert result.exit_code == 0, result.output
    return folder / "b"


def csv_of(competition):
    return competition / get_task("codemmlu").test_file


def rows_of(path):
    return dict(line.split(",", 1) for line in path.read_text().splitlines()[1:])


class FailsOnOneQuestion(LlamaCppLLM):
    """The real llama.cpp backend, except that it raises for any call holding one question's prompt,
    as a decode failure on one input would. Every other call is the real scoring."""

    question = ""
    failures = 0

    def score_options(self, chats, options):
        if any(self.question in message["content"] for chat in chats for message in chat):
            type(self).failures += 1
            raise RuntimeError("llama_decode returned -3\n(a failure on this one input)")
        return super().score_options(chats, options)


def test_an_item_the_backend_fails_on_gets_the_fallback_row(tmp_path, bundle, competition, items, monkeypatch):
    poisoned = items[2]  # the first item of the second batch
    monkeypatch.setattr(FailsOnOneQuestion, "question", poisoned.question[:60])
    monkeypatch.setattr(FailsOnOneQuestion, "failures", 0)
    monkeypatch.setattr("mcqa.llm.llamacpp.LlamaCppLLM", FailsOnOneQuestion)  # what load_llm builds
    out, lines = tmp_path / "submission.csv", []
    figures = run("codemmlu", bundle, competition, out, threads=1, log=lines.append)

    assert FailsOnOneQuestion.failures == 3, "the batch, its one retry, then the item alone"
    assert figures["failed_items"] == 1 and figures["deadline_fallbacks"] == 0
    assert figures["fallback_rows"] == 1, "its batch mate was solved alone, every other item in its batch"
    assert json.loads(lines[-1]) == figures
    (logged,) = [line for line in lines if "gets the fallback row" in line]
    assert poisoned.id in logged and "RuntimeError: llama_decode returned -3 (a failure on this one input)" in logged
    assert rows_of(out)[poisoned.id] == "A"  # codemmlu's fallback answer
    result = runner.invoke(
        app, ["kaggle", "validate", "--task", "codemmlu", str(out), "--test", str(csv_of(competition))]
    )
    assert result.exit_code == 0, result.output


def test_a_deadline_reached_mid_run_leaves_the_rest_to_fallbacks(tmp_path, bundle, competition):
    """A clock that steps 10 s per reading: start 0, before batch 1 at 10 s (20 s left of 30, margin
    only the write: go), before batch 2 at 20 s (10 s left, margin 2 x 10 s + the write: stop)."""
    steps = itertools.count(0, 10)
    out, lines = tmp_path / "submission.csv", []
    figures = run(
        "codemmlu",
        bundle,
        competition,
        out,
        threads=1,
        log=lines.append,
        deadline_minutes=0.5,
        clock=lambda: next(steps),
    )
    assert figures["deadline_fallbacks"] == TEST_ROWS - 2 and figures["failed_items"] == 0
    assert figures["fallback_rows"] == TEST_ROWS - 2 and figures["rows"] == TEST_ROWS
    assert any(line.startswith(f"deadline: {TEST_ROWS - 2} item(s) left to fallback rows") for line in lines)
    assert validate(get_task("codemmlu"), out, csv_of(competition)) == []


def test_a_spent_deadline_from_either_entry_point_still_writes_a_valid_submission(
    tmp_path, bundle, competition, capsys
):
    """--deadline-minutes 0 (the budget is gone before the first batch): every row a fallback, none solved."""
    out = tmp_path / "cli.csv"
    result = runner.invoke(
        app,
        [
            "kaggle",
            "run",
            "--task",
            "codemmlu",
            "--bundle",
            str(bundle),
            "--input",
            str(competition),
            "--out",
            str(out),
            "--threads",
            "1",
            "--deadline-minutes",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads([line for line in result.output.splitlines() if line.startswith("{")][-1])
    assert figures["deadline_fallbacks"] == TEST_ROWS and figures["fallback_rows"] == TEST_ROWS
    assert validate(get_task("codemmlu"), out, csv_of(competition)) == []

    script_out = tmp_path / "script.csv"
    assert (
        main(
            [
                "--task",
                "codemmlu",
                "--bundle",
                str(bundle),
                "--input",
                str(competition),
                "--out",
                str(script_out),
                "--threads",
                "1",
                "--deadline-minutes",
                "0",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["deadline_fallbacks"] == TEST_ROWS
    assert rows_of(script_out) == rows_of(out)


def test_the_deadline_margin_is_twice_the_slowest_batch_plus_the_write():
    now = [0.0]
    deadline = Deadline(100, write_s=5, clock=lambda: now[0])
    assert not deadline.reached() and deadline.margin == 5  # before the first batch: only the write
    now[0] = 20  # batch 1 took 20 s: margin 45, 80 s left
    assert not deadline.reached() and deadline.margin == 45
    now[0] = 30  # batch 2 took 10 s: the slowest is still 20 s, 70 s left
    assert not deadline.reached() and deadline.margin == 45
    now[0] = 56  # batch 3 took 26 s: margin 57, 44 s left
    assert deadline.reached() and deadline.margin == 57
