"""`mcqa train seqclass` for real: MiniLM fine-tuned end to end on a seeded slice of the MAP data (64 fit
rows, 4 steps of 8, 64 tokens), killed after its step-2 checkpoint and run again.

What a user relies on: results.json with the training seconds, MAP@3 (restricted and not) and the
inference speed; a rerun that resumes from the last checkpoint instead of retraining finished steps;
a saved model that loads on its own and scores a response.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.finetune import seqclass

THREADS = os.environ.get("MCQA_THREADS", "2")
CONFIG = "limit: 64\nmax_steps: 4\nbatch_size: 8\neval_batch_size: 32\nmax_seq_length: 64\nsave_steps: 2\n"


class Killed(Exception):
    """Stands in for a kill right after a checkpoint is written."""


def train(config, out):
    return CliRunner().invoke(
        app, ["train", "seqclass", "--config", str(config), "--out", str(out), "--threads", THREADS]
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "seqclass.yaml"
    path.write_text(CONFIG)
    return path


def test_seqclass_trains_resumes_after_a_crash_and_saves_a_model(config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = seqclass.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if state["step"] == 2:
            raise Killed

    monkeypatch.setattr(seqclass, "save_checkpoint", save_then_die)
    crashed = train(config, out)
    assert isinstance(crashed.exception, Killed), crashed.output
    assert not (out / "results.json").exists()
    monkeypatch.setattr(seqclass, "save_checkpoint", real_save)

    resumed = train(config, out)
    assert resumed.exit_code == 0, resumed.output
    results = json.loads((out / "results.json").read_text())
    assert results["resumed_from_step"] == 2 and results["steps_run"] == 2 and results["steps"] == 4
    for field in ("train_s", "median_step_s", "responses_per_s", "labels", "fit_answers", "validation_answers"):
        assert results[field] is not None and results[field] > 0, field
    scores = results["validation"]["map@3"]
    assert set(scores) == {"restricted", "unrestricted"}
    assert all(0.0 <= v <= 1.0 for v in scores.values()), scores

    again = train(config, out)  # every step done: nothing retrained, scored and saved again
    assert again.exit_code == 0, again.output
    rerun = json.loads((out / "results.json").read_text())
    print(json.dumps({"resumed": results, "rerun": rerun}))
    assert rerun["resumed_from_step"] == 4 and rerun["steps_run"] == 0 and rerun["steps"] == 4

    from mcqa.rag.splits import load_items

    model = seqclass.SeqClassifier.load(out / "model")
    assert len(model.labels) == results["labels"] and model.meta["max_seq_length"] == 64
    item = load_items("map", "validation")[0]
    probs = model.predict([item])
    assert probs.shape == (1, len(model.labels))
    assert np.isclose(probs.sum(), 1.0, atol=1e-4)
    assert "Correct: " in seqclass.response_text(item) and "Explanation: " in seqclass.response_text(item)
