"""The retrieval training recipes for real: MiniLM, FAISS-free exact mining, sentence-transformers
trainers and the Eedi catalogue, on small seeded slices of the shared data (a few steps each).

What is checked is what a user relies on: a run folder that resumes (after a finished stage, and from
a trainer checkpoint after a crash), a trained model that the agent loads and that differs from the
base, results.json with the figures the closing notes quote, and a refused config change.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.finetune import common
from mcqa.finetune import embedder as embedder_recipe
from mcqa.finetune import refiner as refiner_recipe
from mcqa.finetune.common import TrainError, TrainRun, latest_checkpoint
from mcqa.rag.embedder import Embedder

QUICK = ["--max-steps", "2", "--threads", "2"]


def train(*args: str):
    result = CliRunner().invoke(app, ["train", *args])
    return result


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "embedder.yaml"
    path.write_text("limit: 16\nrounds: 2\nnegatives: 1\nbatch_size: 4\nrank_max: 20\nsave_steps: 1\n")
    return path


@pytest.fixture(scope="module")
def embedder_run(quick_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "embedder"
    result = train("embedder", "--config", str(quick_config), "--out", str(out), *QUICK)
    assert result.exit_code == 0, result.output
    return out


def test_embedder_rounds_mine_train_and_score(embedder_run):
    results = json.loads((embedder_run / "results.json").read_text())
    assert results["recipe"] == "embedder" and results["fit_pairs"] >= 16
    assert [r["stage"] for r in results["rounds"]] == ["round-0", "round-1"]
    for record in results["rounds"]:
        assert record["steps"] == 2 and record["median_step_s"] > 0
        assert 0 <= record["validation"]["map@25"] <= record["validation"]["recall@25"] <= 1
        mined = [json.loads(line) for line in (embedder_run / record["stage"] / "mined.jsonl").open()]
        assert mined and all(row["positive_id"] not in row["negative_ids"] for row in mined)
    assert 0 <= results["base"]["map@25"] <= 1 and results["total_s"] > 0
    assert not list((embedder_run / "checkpoints").glob("*/checkpoint-*")), "finished stages drop their checkpoints"

    tuned, base = Embedder(str(embedder_run / "model")), Embedder("minilm-l6")
    text = ["Subject: Fractions. Incorrect answer: 1/5"]
    tuned_vector, base_vector = tuned.encode(text), base.encode(text)
    assert tuned_vector.shape == base_vector.shape == (1, 384)
    assert not np.allclose(tuned_vector, base_vector, atol=1e-4), "four steps of training moved nothing"


def test_a_finished_run_resumes_without_training_and_a_changed_config_is_refused(embedder_run, quick_config):
    before = json.loads((embedder_run / "results.json").read_text())
    again = train("embedder", "--config", str(quick_config), "--out", str(embedder_run), *QUICK)
    assert again.exit_code == 0, again.output
    after = json.loads((embedder_run / "results.json").read_text())
    assert after["rounds"] == before["rounds"], "done stages are skipped, not retrained"

    changed = train("embedder", "--config", str(quick_config), "--out", str(embedder_run), "--max-steps", "3")
    assert changed.exit_code == 2 and "another config" in " ".join(changed.output.split())


def test_a_miner_mines_round_0_for_another_base(embedder_run, tmp_path, monkeypatch):
    """Starting from the tuned model with `miner: minilm-l6`, round 0's negatives are the ones MiniLM
    mined for the first run (same items, seed and ranks), not the tuned model's own, and what is scored
    before training is recorded as the miner's."""
    config = embedder_recipe.Config(
        limit=16,
        rounds=1,
        negatives=1,
        batch_size=4,
        rank_max=20,
        save_steps=1,
        max_steps=2,
        base=str(embedder_run / "model"),
        miner="minilm-l6",
    )
    encoded_by, real_encoded = [], embedder_recipe.Encoded
    monkeypatch.setattr(
        embedder_recipe, "Encoded", lambda model, *a: encoded_by.append(model) or real_encoded(model, *a)
    )
    results = embedder_recipe.train(config, TrainRun(tmp_path / "run", config))
    monkeypatch.undo()
    assert encoded_by == ["minilm-l6", str(tmp_path / "run" / "round-0" / "model")], (
        "the miner encodes for mining, the base never does, the trained model is scored"
    )

    def mined(folder):
        return [json.loads(line) for line in (folder / "round-0" / "mined.jsonl").open()]

    assert mined(tmp_path / "run") == mined(embedder_run), "MiniLM mines the same negatives whatever the base"
    assert "base" not in results and 0 <= results["miner"]["map@25"] <= 1
    assert results["rounds"][0]["steps"] == 2
    text = ["Incorrect answer: 1/5"]
    start, miner = Embedder(str(embedder_run / "model")).encode(text), Embedder("minilm-l6").encode(text)
    trained = Embedder(str(tmp_path / "run" / "model")).encode(text)
    assert not np.allclose(trained, start, atol=1e-5), "two steps moved nothing"
    assert np.linalg.norm(trained - start) < np.linalg.norm(trained - miner), "training started from the base"


def test_a_run_saved_before_a_field_existed_still_resumes(tmp_path):
    """A run folder written before `miner` existed has no such key: it resumes, and a changed value is refused."""
    config = embedder_recipe.Config(limit=16, rounds=1)
    TrainRun(tmp_path / "run", config)
    saved = tmp_path / "run" / "config.yaml"
    older = yaml.safe_load(saved.read_text())
    del older["miner"]
    saved.write_text(yaml.safe_dump(older, sort_keys=False))
    TrainRun(tmp_path / "run", config)
    assert "miner" in yaml.safe_load(saved.read_text()), "the saved config is rewritten with every field"
    with pytest.raises(TrainError, match="another config"):
        TrainRun(tmp_path / "run", embedder_recipe.Config(limit=16, rounds=1, miner="minilm-l6"))
    saved.write_text("rounds: [not a number]\n")
    with pytest.raises(TrainError, match="another config"):
        TrainRun(tmp_path / "run", config)


def test_a_crash_mid_round_resumes_from_the_trainer_checkpoint(quick_config, tmp_path, monkeypatch):
    """A callback kills training as step 3 of 4 begins; the rerun continues at step 3, not at step 1."""
    real_timer = common.step_timer

    def crashing_timer():
        timer = real_timer()
        original = timer.on_step_begin

        def on_step_begin(args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated crash")
            original(args, state, control, **kwargs)

        timer.on_step_begin = on_step_begin
        return timer

    config = embedder_recipe.Config(
        limit=16, rounds=1, negatives=1, batch_size=4, rank_max=20, save_steps=1, max_steps=4
    )
    run = TrainRun(tmp_path / "run", config)
    monkeypatch.setattr(embedder_recipe, "step_timer", crashing_timer)
    with pytest.raises(KeyboardInterrupt):
        embedder_recipe.train(config, run)
    checkpoint = latest_checkpoint(run.checkpoints / "round-0")
    assert checkpoint and checkpoint.endswith("checkpoint-2")
    monkeypatch.setattr(embedder_recipe, "step_timer", real_timer)
    results = embedder_recipe.train(config, TrainRun(tmp_path / "run", config))
    assert results["rounds"][0]["steps"] == 2, "the resumed run trained only the two missing steps"
    assert (tmp_path / "run" / "model" / "config_sentence_transformers.json").exists()


def test_bad_configs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 0\n")
    result = train("embedder", "--config", str(bad), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "rounds" in result.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("negatvies: 3\n")
    result = train("refiner", "--config", str(typo), "--out", str(tmp_path / "y"))
    assert result.exit_code == 2 and "negatvies" in result.output
    with pytest.raises(TrainError):
        common.load_train_config(embedder_recipe.Config, tmp_path / "missing.yaml")


def test_reranker_trains_and_reports_retrieval_against_reranked(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    out = tmp_path / "reranker"
    result = train("reranker", "--out", str(out), "--limit", "12", *QUICK)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["steps"] == 2 and results["training"]["pairs"] > 12
    validation = results["validation"]
    for side in ("retrieval", "reranked", "fused"):
        assert 0 <= validation[side]["map@25"] <= 1
    assert validation["fused"]["rerank_weight"] == 1.0
    model = CrossEncoder(str(out / "model"), device="cpu")
    scores = model.predict([("Incorrect answer: 1/5", "Adds the denominators"), ("x", "y")])
    assert scores.shape == (2,) and scores[0] != scores[1]


def test_refiner_starts_from_the_base_and_saves_an_embedder_folder(tmp_path):
    zero = tmp_path / "zero"
    refiner_recipe.save_refiner("minilm-l6", np.zeros((384, 384), dtype=np.float32), zero)
    texts = ["Believes multiplying two negatives gives a negative", "Confuses area and perimeter"]
    np.testing.assert_allclose(Embedder(str(zero)).encode(texts), Embedder("minilm-l6").encode(texts), atol=1e-5)

    out = tmp_path / "refiner"
    result = train("refiner", "--out", str(out), "--limit", "60", "--threads", "2")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["validation"]) == {"base", "ridge", "refiner", "refiner+ridge"}
    assert results["training"]["steps"] > 0 and (out / "ridge.npy").exists()
    vectors = Embedder(str(out / "model")).encode(texts)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
