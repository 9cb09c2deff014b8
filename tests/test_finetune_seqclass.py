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


LLM_CONFIG = (
    "base: smollm2-135m\nlora: {r: 4, alpha: 8, dropout: 0.0}\ndevice: cpu\n"
    "limit: 24\nmax_steps: 2\nbatch_size: 4\neval_batch_size: 12\nmax_seq_length: 64\nsave_steps: 1\n"
)


def test_an_llm_backbone_trains_lora_and_its_merged_model_scores_as_the_adapted_one(tmp_path):
    """The medal solutions' kind of classifier, on the tiny real LLM: LoRA on a dequantized GGUF decoder,
    last-token pooling. The checkpoint holds the trained weights only (adapters and head, not the frozen
    backbone), and the saved model, LoRA merged in and loaded without peft, scores responses as the base
    with the checkpoint's adapters does."""
    import torch

    from mcqa.rag.splits import load_items

    config = tmp_path / "llm.yaml"
    config.write_text(LLM_CONFIG)
    out = tmp_path / "run"
    done = train(config, out)
    assert done.exit_code == 0, done.output
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and results["device"] == "cpu"
    assert 0.0 <= results["validation"]["map@3"]["restricted"] <= 1.0

    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    trained = sum(v.numel() for v in state["model"].values())
    assert results["trained_parameters"] == trained < 5_000_000  # adapters and head, out of 135M
    assert any("lora_B" in key for key in state["model"]) and "head.weight" in state["model"]
    assert not any("lora" not in key and "head" not in key for key in state["model"]), "frozen weights saved"
    assert any(float(v.abs().sum()) > 0 for k, v in state["model"].items() if "lora_B" in k), "adapters untrained"

    merged = seqclass.load_seqclass(out / "model")
    assert isinstance(merged, seqclass.SeqClassifier) and merged.meta["pooling"] == "last"
    settings = seqclass.Config.model_validate({"base": "smollm2-135m", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    encoder, tokenizer, pooling = seqclass.load_backbone(settings.base)
    network = seqclass._network(encoder, len(merged.labels), pooling)
    network.encoder = seqclass._with_lora(encoder, settings.lora)
    missing, unexpected = network.load_state_dict(state["model"], strict=False)
    assert not unexpected and not any("lora" in key or "head" in key for key in missing)
    adapted = seqclass.SeqClassifier(network, tokenizer, merged.labels, merged.meta)
    items = load_items("map", "validation")[:6]  # texts of different lengths: padding on the right
    expected, got = adapted.predict(items), merged.predict(items)
    assert got.shape == (6, len(merged.labels)) and np.allclose(got.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(got, expected, atol=2e-4), np.abs(got - expected).max()
    # the pooled state is each text's own last token: alone (no padding) a response scores as in the batch
    alone = np.vstack([merged.predict([item]) for item in items])
    assert np.allclose(alone, got, atol=2e-4), np.abs(alone - got).max()


def test_an_llm_backbone_without_lora_is_refused_before_loading(tmp_path):
    config = tmp_path / "llm.yaml"
    config.write_text("base: smollm2-135m\nlimit: 24\nmax_steps: 1\n")
    refused = train(config, tmp_path / "run")
    assert refused.exit_code != 0
    assert "give `lora`" in refused.output
