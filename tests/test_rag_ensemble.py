"""Ensembles of retrievers: fusion by z-score sum and by reciprocal rank, checked by hand on small lists,
then with the real MiniLM on the real Eedi catalogue (an ensemble of MiniLM with itself must rank as
MiniLM alone does), in `mcqa eval retrieval`, in the agent and in a Kaggle bundle."""

import json
import math

import numpy as np
import pytest
from test_rag_store import write_mini_eedi
from typer.testing import CliRunner

from mcqa.agent.config import AgentConfig
from mcqa.agent.graph import RESOURCES, Agent, default_tasks
from mcqa.agent.solver import AgentSolver
from mcqa.cli import app
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.rag import Embedder, load_or_build_misconception_index
from mcqa.rag.queries import DEFAULT_QUERY_FORMAT, QUERY_FORMATS
from mcqa.rag.retrieval import RRF_K, fuse_lists, score_format, search_fused
from mcqa.rag.splits import load_items

runner = CliRunner()


def ids(hits):
    return [mid for mid, _ in hits]


# -- fusion by hand ----------------------------------------------------------------------------------


def test_rrf_by_hand():
    a = [("x", 0.9), ("y", 0.8), ("z", 0.1)]
    b = [("y", 55.0), ("w", 3.0)]  # another scale entirely: rrf reads ranks only
    fused = dict(fuse_lists([a, b], "rrf", [1.0, 2.0]))
    assert fused == pytest.approx({"x": 1 / 61, "y": 1 / 62 + 2 / 61, "z": 1 / 63, "w": 2 / 62})
    assert RRF_K == 60
    assert ids(fuse_lists([a, b], "rrf", [1.0, 2.0])) == ["y", "w", "x", "z"]
    assert ids(fuse_lists([a, b], "rrf")) == ["y", "x", "w", "z"], "equal weights: 1/62 + 1/61 first, 1/61 > 1/62"


def test_zsum_by_hand():
    a = [("x", 0.9), ("y", 0.7), ("z", 0.5)]  # mean 0.7, spread 0.1633: z = +1.22, 0, -1.22
    b = [("y", 0.6), ("z", 0.4), ("x", 0.2)]  # mean 0.4: z(x) = -1.22, z(y) = +1.22, z(z) = 0
    r = math.sqrt(1.5)
    assert dict(fuse_lists([a, b], "zsum")) == pytest.approx({"x": 0.0, "y": r, "z": -r})
    assert ids(fuse_lists([a, b], "zsum")) == ["y", "x", "z"]
    assert dict(fuse_lists([a, b], "zsum", [3.0, 1.0])) == pytest.approx({"x": 2 * r, "y": r, "z": -3 * r})
    # a scale change of one list changes nothing: z-scores
    b_scaled = [(m, 100 * s - 7) for m, s in b]
    assert dict(fuse_lists([a, b_scaled], "zsum")) == pytest.approx(dict(fuse_lists([a, b], "zsum")))
    # an id a list lacks counts as that list's lowest score
    short = [("y", 0.6), ("z", 0.4)]
    assert dict(fuse_lists([a, short], "zsum")) == pytest.approx(
        dict(fuse_lists([a, [("y", 0.6), ("z", 0.4), ("x", 0.4)]], "zsum"))
    )


def test_fusion_of_one_list_is_that_list_and_bad_input_is_refused():
    hits = [("a", 0.8), ("b", 0.79), ("c", 0.3), ("d", 0.3)]
    for fusion in ("zsum", "rrf"):
        assert ids(fuse_lists([hits], fusion)) == ids(hits), "ties keep their order"
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse_lists([hits], "borda")
    with pytest.raises(ValueError, match="2 retrievers but 1 fusion weights"):
        fuse_lists([hits, hits], "zsum", [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        fuse_lists([hits, hits], "rrf", [1.0, -1.0])


def test_the_config_checks_the_weights_when_it_is_read():
    assert AgentConfig(embedders=["mpnet-base"], fusion_weights=[1, 0.5]).fusion_weights == [1.0, 0.5]
    for weights in ([1.0], [0.0, 0.0], [1.0, -2.0]):
        with pytest.raises(ValueError, match="fusion_weights needs 2 weights"):
            AgentConfig(embedders=["mpnet-base"], fusion_weights=weights)
    with pytest.raises(ValueError):
        AgentConfig(fusion="borda")


# -- the real MiniLM on the real Eedi catalogue ----------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_index(data_root):
    return load_or_build_misconception_index("eedi", Embedder("minilm-l6"), data_root)


@pytest.fixture(scope="module")
def queries(data_root):
    build = QUERY_FORMATS[DEFAULT_QUERY_FORMAT]
    items = [it for it in load_split("eedi", "train", data_root).items if it.misconceptions][:6]
    return [build(it, x) for it in items for x in it.letters if x != it.answer]


def test_one_index_is_its_own_search(minilm_index, queries):
    vectors = minilm_index.embedder.encode(queries, kind="query")
    assert search_fused([minilm_index], [vectors], 25) == minilm_index.search_vectors(vectors, 25)


def test_an_ensemble_of_minilm_with_itself_ranks_like_minilm(minilm_index, data_root, queries):
    twin = load_or_build_misconception_index("eedi", Embedder("minilm-l6"), data_root)  # a second index object
    vectors = minilm_index.embedder.encode(queries, kind="query")
    alone = minilm_index.search_vectors(vectors, 50)
    for fusion in ("zsum", "rrf"):
        fused = search_fused([minilm_index, twin], [vectors, vectors], 50, fusion, [1.0, 2.0])
        assert [ids(h) for h in fused] == [ids(h) for h in alone], fusion
        if fusion == "zsum":  # mapped back onto MiniLM's cosines: the very same scores
            assert np.allclose([[s for _, s in h] for h in fused], [[s for _, s in h] for h in alone], atol=1e-5)


def test_similarities_score_any_misconception(minilm_index, queries):
    vector = minilm_index.embedder.encode(queries[:1], kind="query")[0]
    hits = minilm_index.search_vectors(vector[None], 2587)[0]
    last, first = hits[-1], hits[0]
    assert minilm_index.similarities(vector, [last[0], first[0]]) == pytest.approx([last[1], first[1]], abs=1e-5)


def test_score_format_of_an_ensemble_of_itself_matches_the_single_embedder(minilm_index, data_root):
    items = load_items("eedi", "validation", data_root)[:10]
    single = score_format(items, minilm_index, DEFAULT_QUERY_FORMAT)
    twin = load_or_build_misconception_index("eedi", Embedder("minilm-l6"), data_root)
    for fusion in ("zsum", "rrf"):
        ensemble = score_format(items, [minilm_index, twin], DEFAULT_QUERY_FORMAT, fusion=fusion)
        assert ensemble.queries == single.queries > 0
        assert ensemble.map_at_k == pytest.approx(single.map_at_k) and ensemble.recall_at_k == pytest.approx(
            single.recall_at_k
        )


def test_eval_retrieval_scores_an_ensemble(tmp_path, monkeypatch):
    """On a real slice of Eedi (tests/test_rag_store.py) in a temporary cache: a few seconds to encode."""
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "cache"))
    mini = write_mini_eedi(tmp_path / "data")
    out = tmp_path / "retrieval.json"
    args = [
        "eval",
        "retrieval",
        "--dataset",
        "eedi",
        "--split",
        "validation",
        "--format",
        DEFAULT_QUERY_FORMAT,
        "--data-dir",
        str(mini),
    ]
    result = runner.invoke(
        app,
        [
            *args,
            "--ensemble",
            "minilm-l6",
            "--fusion",
            "rrf",
            "--fusion-weight",
            "1",
            "--fusion-weight",
            "2",
            "--candidates",
            "30",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ensemble"]["fusion"] == "rrf" and report["ensemble"]["weights"] == [1.0, 2.0]
    assert "embedders minilm-l6, minilm-l6 fused by rrf" in " ".join(result.output.split())
    single = runner.invoke(app, [*args, "--out", str(tmp_path / "single.json")])
    assert single.exit_code == 0, single.output
    alone = json.loads((tmp_path / "single.json").read_text())
    assert "ensemble" not in alone and alone["scores"][0]["map_at_k"] == pytest.approx(report["scores"][0]["map_at_k"])
    assert [e["name"] for e in report["ensemble"]["embedders"]] == ["minilm-l6", "minilm-l6"]
    result = runner.invoke(app, [*args, "--ensemble", "minilm-l6", "--fusion-weight", "1"])
    assert result.exit_code == 2 and "2 retrievers but 1 fusion weights" in result.output
    result = runner.invoke(app, [*args, "--ensemble", "minilm-l6", "--fusion", "borda"])
    assert result.exit_code == 2 and "--fusion must be one of" in result.output


# -- the agent ------------------------------------------------------------------------------------------


def config(**agent):
    return load_config(**{f"agent.{k}": v for k, v in {"permutations": 1, **agent}.items()})


@pytest.fixture(scope="module")
def eedi_items(data_root):
    return [it for it in load_split("eedi", "train", data_root).items if len(it.misconceptions) >= 2][:2]


def test_an_ensemble_is_a_resource_only_when_configured():
    def used(**agent):
        cfg = AgentConfig(**agent).for_dataset("eedi")
        return Agent(cfg, None, default_tasks("eedi")).resources_used()

    assert "extra_misconceptions" not in used() and "extra_misconceptions" not in used(embedders=[])
    assert used(embedders=["mpnet-base"]) == {
        "embedder",
        "misconceptions",
        "extra_misconceptions",
        "hub_penalties",
        "labels",
    }
    assert used(embedders=["mpnet-base"]) <= set(RESOURCES)


def test_the_agent_with_an_ensemble_proposes_25_per_wrong_answer(eedi_items, small_eedi):
    """Votes on (Eedi's default): the fused list goes on to the votes as one embedder's would (from the
    label store of a 60-question train file, which holds the items: the shared file's takes a minute)."""
    solver = AgentSolver(
        config(embedders=["minilm-l6"], fusion="rrf", candidates=40), dataset="eedi", data_root=small_eedi
    )
    predictions = solver(eedi_items)
    assert len(solver.resources.extra_misconceptions) == 1
    assert set(solver.resources.__dict__) & set(RESOURCES) == solver.agent.resources_used()
    for item, p in zip(eedi_items, predictions, strict=True):
        assert sorted(p.misconceptions) == sorted(x for x in item.letters if x != item.answer)
        for letter, found in p.misconceptions.items():
            assert len(found) == 25 and len(set(found)) == 25
            assert p.misconception_scores[letter] == sorted(p.misconception_scores[letter], reverse=True)


def test_an_ensemble_of_the_same_embedder_changes_no_prediction(eedi_items, data_root):
    def run(**agent):
        return AgentSolver(config(votes=0, candidates=40, **agent), dataset="eedi", data_root=data_root)(eedi_items)

    alone, twins = run(), run(embedders=["minilm-l6"], fusion_weights=[1.0, 0.5])
    for a, b in zip(alone, twins, strict=True):
        assert a.misconceptions == b.misconceptions
        for letter in a.misconceptions:
            assert np.allclose(a.misconception_scores[letter], b.misconception_scores[letter], atol=1e-5)


def test_a_kaggle_bundle_ships_every_member_and_runs(data_root, tmp_path, monkeypatch):
    from mcqa.kaggle.formats import get_task
    from mcqa.kaggle.validate import validate

    monkeypatch.setenv("MCQA_THREADS", "1")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("agent:\n  embedders: [minilm-l6]\n  fusion: rrf\n")
    bundle = tmp_path / "b"
    result = runner.invoke(
        app,
        [
            "kaggle",
            "bundle",
            "--task",
            "eedi",
            "--out",
            str(bundle),
            "--no-wheels",
            "--config",
            str(cfg),
            "--data-dir",
            str(data_root),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "bundle.json").read_text())
    # every member ships (as a folder: the bundle encodes with the numpy MiniLM), the same model once per slot
    assert manifest["install"] == ["mcqa-agent[embed]"]
    assert manifest["relative_paths"]["agent.embedder"] == "models/embedder"
    assert manifest["relative_paths"]["agent.embedders.0"] == "models/embedders/0"
    assert (bundle / "models" / "embedders" / "0" / "config.json").is_file()
    assert (bundle / "indexes" / "misconceptions-eedi-1" / "manifest.json").is_file()
    out = tmp_path / "submission.csv"
    result = runner.invoke(
        app,
        [
            "kaggle",
            "run",
            "--task",
            "eedi",
            "--bundle",
            str(bundle),
            "--input",
            str(data_root / "eedi"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("catalogue checksum matches") == 2, "both members' bundled indexes are used"
    assert validate(get_task("eedi"), out, data_root / "eedi" / "test.csv") == []
