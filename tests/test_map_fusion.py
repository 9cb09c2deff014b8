"""MAP's fused ranking: one score from retrieval, votes, the frozen-vector head, the n-gram classifier
and the fine-tuned sequence classifier; the seqclass model run with numpy as with torch; the agent using it; and
`mcqa train map-fusion` choosing the weights on `validation-inner` with the agent's own ranking (its
best score is what `mcqa eval run` then measures with the config it writes). Real MiniLM, real
MAP rows (a slice of the train file in a temporary data folder keeps the stores small).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.rag.retrieval import LabelEvidence
from mcqa.rag.splits import load_items

runner = CliRunner()
THREADS = os.environ.get("MCQA_THREADS", "2")


# -- the fused score, by hand -------------------------------------------------------------------------


def evidence(**changes) -> LabelEvidence:
    fields = {
        "hits": [("Misconception:Adding", 0.5), ("Misconception:Inversion", 0.4)],
        "neighbours": [("Correct:NA", 0.9), ("Misconception:Inversion", 0.8), ("Neither:NA", 0.75)],
        "head": {"Correct:NA": 0.2, "Misconception:Inversion": 0.1, "Neither:NA": 0.7},
        "seqclass": {"Correct:NA": 0.1, "Misconception:Inversion": 0.1, "Neither:NA": 0.8},
        "right": False,
    }
    return LabelEvidence(**{**fields, **changes})


def test_the_fused_score_is_cosine_plus_weighted_votes_and_probabilities():
    # votes at threshold 0.7: Correct (0.9-0.7)/0.3 = 2/3, Inversion 1/3, Neither 1/6; floor 0.4
    ranked = dict(evidence().rank(k=3, threshold=0.7, vote_weight=10, classifier_weight=1, seqclass_weight=2))
    assert ranked["False_Correct:NA"] == pytest.approx(0.4 + 10 * (2 / 3 + 0.2 + 0.2))
    assert ranked["False_Misconception:Inversion"] == pytest.approx(0.4 + 10 * (1 / 3 + 0.1 + 0.2))
    assert ranked["False_Neither:NA"] == pytest.approx(0.4 + 10 * (1 / 6 + 0.7 + 1.6))
    assert ranked["False_Misconception:Adding"] == pytest.approx(0.5)
    order = [label for label, _ in evidence().rank(3, 0.7, 10, 1, 2)]
    assert order[0] == "False_Neither:NA"


def test_the_ngram_classifier_adds_its_weighted_probabilities_like_the_others():
    ngram = {"Misconception:Inversion": 0.9, "Neither:NA": 0.1}
    base = dict(evidence().rank(k=3, threshold=0.7, vote_weight=10, classifier_weight=1, seqclass_weight=2))
    fused = dict(evidence(ngram=ngram).rank(3, 0.7, 10, 1, 2, ngram_weight=3))
    assert fused["False_Misconception:Inversion"] == pytest.approx(base["False_Misconception:Inversion"] + 10 * 3 * 0.9)
    assert fused["False_Neither:NA"] == pytest.approx(base["False_Neither:NA"] + 10 * 3 * 0.1)
    assert fused["False_Correct:NA"] == pytest.approx(base["False_Correct:NA"])
    assert dict(evidence(ngram=ngram).rank(3, 0.7, 10, 1, 2)) == base, "weight 0: left out"


def test_k_cuts_the_neighbours_and_zero_weights_leave_a_classifier_out():
    alone = [label for label, _ in evidence(right=True).rank(k=1, threshold=0.7, vote_weight=10)]
    assert alone[0] == "True_Correct:NA"  # one neighbour votes; no classifier label was added
    assert "True_Neither:NA" not in alone
    no_votes = dict(evidence().rank(k=0, threshold=0.7, vote_weight=1, seqclass_weight=1))
    assert max(no_votes, key=no_votes.get) == "False_Neither:NA"  # the floor 0.4 + P 0.8
    assert no_votes["False_Correct:NA"] == pytest.approx(0.5) and no_votes["False_Misconception:Adding"] == 0.5


def test_the_question_label_space_keeps_only_allowed_labels_and_an_eedi_answer_keeps_ids():
    kept = [
        label for label, _ in evidence(allowed={"Misconception:Inversion", "Correct:NA", "Neither:NA"}).rank(3, 0.7, 10)
    ]
    assert "False_Misconception:Adding" not in kept and len(kept) == 3
    eedi = LabelEvidence(hits=[("12", 0.6), ("40", 0.5)], neighbours=[("40", 0.99)])
    assert [m for m, _ in eedi.rank(10, 0.9, 1.0)] == ["40", "12"]


# -- the seqclass model, trained for real on a slice, with both backends and in the agent ---------------


def train_seqclass(out, fit_split="fit", validation_split="validation"):
    config = out.parent / f"{out.name}.yaml"
    config.write_text(
        "limit: 48\nmax_steps: 3\nbatch_size: 8\neval_batch_size: 32\nmax_seq_length: 64\nsave_steps: 3\n"
        f"fit_split: {fit_split}\nvalidation_split: {validation_split}\n"
    )
    result = runner.invoke(app, ["train", "seqclass", "--config", str(config), "--out", str(out), "--threads", THREADS])
    assert result.exit_code == 0, result.output
    return out / "model"


@pytest.fixture(scope="module")
def map_env(small_map, tmp_path_factory):
    """The small MAP folder as the data folder, a fresh cache, and seqclass models trained on its `fit`
    and on its `fit-inner`."""
    folder = tmp_path_factory.mktemp("fusion")
    patch = pytest.MonkeyPatch()
    patch.setenv("MCQA_DATA_DIR", str(small_map))
    patch.setenv("MCQA_CACHE_DIR", str(folder / "cache"))
    models = {
        "fit": train_seqclass(folder / "seqclass"),
        "inner": train_seqclass(folder / "seqclass-inner", "fit-inner", "validation-inner"),
    }
    yield small_map, folder, models
    patch.undo()


def test_inner_splits_cut_fit_again_and_never_touch_validation(map_env):
    fit, validation = load_items("map", "fit"), load_items("map", "validation")
    inner_fit, inner_validation = load_items("map", "fit-inner"), load_items("map", "validation-inner")
    ids = lambda items: {it.id for it in items}  # noqa: E731
    assert ids(inner_fit) | ids(inner_validation) == ids(fit)
    assert not ids(inner_fit) & ids(inner_validation) and not ids(inner_validation) & ids(validation)
    assert 0.15 < len(inner_validation) / len(fit) < 0.25


def test_the_numpy_seqclass_gives_the_torch_probabilities(map_env):
    from mcqa.finetune.seqclass import NumpySeqClassifier, SeqClassifier, load_seqclass

    _, _, models = map_env
    items = load_items("map", "validation")[:12]
    torch_probs = SeqClassifier.load(models["fit"]).predict(items)
    numpy_model = load_seqclass(models["fit"], backend="numpy")
    assert isinstance(numpy_model, NumpySeqClassifier)
    numpy_probs = numpy_model.predict(items)
    assert numpy_probs.shape == torch_probs.shape == (12, len(numpy_model.labels))
    np.testing.assert_allclose(numpy_probs, torch_probs, atol=2e-5)
    assert np.abs(np.diff(torch_probs, axis=0)).max() > 1e-4, "different responses, different probabilities"


def eval_run(out, split, *extra):
    result = runner.invoke(
        app, ["eval", "run", "--dataset", "map", "--split", split, "--out", str(out), "--no-traces", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text()), [
        json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()
    ]


def test_the_agent_ranks_by_the_seqclass_model_when_its_weight_dominates(map_env):
    from mcqa.finetune.seqclass import load_seqclass

    _, folder, models = map_env
    model = str(models["fit"])
    votes_only = ["--set", "agent.classifier=none", "--set", "agent.ngram=none", "--set", "agent.label_space=all"]
    metrics, predictions = eval_run(
        folder / "dominated",
        "validation",
        "--set",
        f"agent.seqclass={model}",
        "--set",
        "agent.seqclass_weight=1000000",
        *votes_only,
    )
    items = load_items("map", "validation")
    seq = load_seqclass(model)
    probs = seq.predict(items)
    tops = {p["item_id"]: next(iter(p["misconceptions"].values()))[0] for p in predictions}
    assert len(tops) == len(items)
    for item, row in zip(items, probs, strict=True):
        assert tops[item.id].split("_", 1)[1] == seq.labels[int(np.argmax(row))], item.id
    models = json.loads((folder / "dominated" / "run.json").read_text())["provenance"]["models"]
    assert models["seqclass"]["path"] == model and len(models["seqclass"]["sha256"]) == 64
    plain, _ = eval_run(folder / "plain", "validation", *votes_only)
    assert metrics["map_competition"]["map@3"] != plain["map_competition"]["map@3"]


def test_map_fusion_chooses_on_the_inner_split_and_its_score_is_the_agents(map_env):
    _, folder, models = map_env
    config = folder / "fusion.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seqclass": str(models["inner"]),
                "final_seqclass": str(models["fit"]),
                "k": [5, 25],
                "vote_threshold": [0.6, 0.8],
                "vote_weight": [10.0],
                "classifier_weight": [0.0, 3.0],
                "seqclass_weight": [0.0, 3.0],
                "ngram_weight": [0.0, 3.0],
            }
        )
    )
    out = folder / "fusion"
    result = runner.invoke(app, ["train", "map-fusion", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    grid = results["grid"]
    assert len(grid) == 2 * 2 * 1 * 2 * 2 * 2 and results["best"] == grid[0]
    assert results["parts"]["ngram"] is not None
    assert grid[0]["map@3"] == max(row["map@3"] for row in grid)
    assert results["responses"] == len(load_items("map", "validation-inner"))
    chosen = yaml.safe_load((out / "agent-map.yaml").read_text())["agent"]
    best = results["best"]
    assert chosen["votes"] == best["k"] and chosen["vote_threshold"] == best["vote_threshold"]
    assert chosen["classifier_weight"] == best["classifier_weight"]
    if best["seqclass_weight"]:
        assert chosen["seqclass"] == str(models["fit"])
    assert chosen["ngram"] == ("auto" if best["ngram_weight"] else "none")
    # the same weights through `mcqa eval run` on the same split, with the model the grid used: the same MAP@3
    check = dict(chosen, seqclass=str(models["inner"]), seqclass_weight=best["seqclass_weight"] or 0.0)
    (folder / "check.yaml").write_text(yaml.safe_dump({"agent": check}))
    metrics, _ = eval_run(folder / "check", "validation-inner", "--config", str(folder / "check.yaml"))
    assert metrics["map_competition"]["map@3"] == pytest.approx(best["map@3"], abs=1e-4)
