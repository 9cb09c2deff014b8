"""Two priors on misconception retrieval, checked by hand on small vectors, then with the real MiniLM on the
real Eedi catalogue, in the agent and in `mcqa eval retrieval`:
- sibling contrast: a wrong answer's query minus part of the mean of its question's other wrong answers'
  (the contrasted vector ranks misconceptions exactly as s(q, m) - w * mean s(sibling, m) does);
- hubness: each misconception's cosine less a weight times its hub score (the mean of its k highest
  cosines with a bank of queries: every wrong answer of the split being solved)."""

import json
from itertools import islice

import numpy as np
import pytest
from test_rag_store import write_mini_eedi
from typer.testing import CliRunner

from mcqa.agent.config import AgentConfig
from mcqa.agent.solver import AgentSolver
from mcqa.cli import app
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.rag import Embedder, load_or_build_misconception_index
from mcqa.rag.queries import QUERY_FORMATS
from mcqa.rag.retrieval import bank_texts, contrast_siblings, count_queries, hub_penalty, unlabelled_wrong

runner = CliRunner()


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_contrast_by_hand():
    vectors = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    out = contrast_siblings(vectors, ["q1", "q1", "q1", "q2"], 0.5)
    expected = vectors[0] - 0.5 * (vectors[1] + vectors[2]) / 2
    assert np.allclose(out[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(out[3], vectors[3])  # a question with one wrong answer has no siblings: unchanged
    assert np.array_equal(contrast_siblings(vectors, ["q1"] * 4, 0.0), vectors)
    with pytest.raises(ValueError, match="4 query vectors but 3 groups"):
        contrast_siblings(vectors, ["q1", "q1", "q2"], 0.5)


@pytest.fixture(scope="module")
def eedi_items(data_root):
    """Questions whose three distractors are all labelled, and one with an unlabelled distractor."""
    items = load_split("eedi", "train", data_root).items
    full = [it for it in items if len(it.misconceptions) == 3][:2]
    partial = [it for it in items if len(it.misconceptions) == 2][:1]
    return full + partial


def test_the_contrasted_vector_ranks_by_the_contrasted_scores(data_root, eedi_items):
    index = load_or_build_misconception_index("eedi", Embedder("minilm-l6"), data_root)
    build = QUERY_FORMATS["answer_first"]
    item = eedi_items[0]
    wrong = [x for x in item.letters if x != item.answer]
    vectors = index.embedder.encode([build(item, x) for x in wrong], kind="query")
    ids = [m.id for m in index.misconceptions]
    scores = np.stack([index.similarities(v, ids) for v in vectors])
    wanted = scores[0] - 0.4 * scores[1:].mean(axis=0)
    contrasted = contrast_siblings(vectors, [item.id] * len(wrong), 0.4)
    hits = index.search_vectors(contrasted[:1], 25)[0]
    assert [mid for mid, _ in hits] == [ids[j] for j in np.argsort(-wanted, kind="stable")[:25]]
    plain = index.search_vectors(vectors[:1], 25)[0]
    assert [mid for mid, _ in hits] != [mid for mid, _ in plain]  # the real effect is not nil


def test_the_agent_retrieves_with_contrasted_queries(data_root, eedi_items):
    """Votes off, so the agent's list is retrieval's: with the default (Eedi: 0.4) it is the search of the
    contrasted vectors, with 0 the plain search; a MAP-style item (one wrong answer) is never contrasted."""
    assert AgentConfig().for_dataset("eedi").sibling_contrast == 0.4
    assert AgentConfig().for_dataset("map").sibling_contrast == 0.0

    def run(**agent):
        cfg = load_config(
            **{
                f"agent.{k}": v
                for k, v in {"permutations": 1, "votes": 0, "query_format": "answer_first", **agent}.items()
            }
        )
        solver = AgentSolver(cfg, dataset="eedi", data_root=data_root)
        return solver, solver(eedi_items)

    solver, contrasted = run()
    _, plain = run(sibling_contrast=0.0)
    index, build = solver.resources.misconceptions, QUERY_FORMATS["answer_first"]
    keys = [(it, x) for it in eedi_items for x in it.letters if x != it.answer]
    vectors = index.embedder.encode([build(it, x) for it, x in keys], kind="query")
    expected = index.search_vectors(contrast_siblings(vectors, [it.id for it, _ in keys], 0.4), 25)
    alone = index.search_vectors(vectors, 25)
    got = [p.misconceptions[x] for p in contrasted for x in sorted(p.misconceptions)]
    got_plain = [p.misconceptions[x] for p in plain for x in sorted(p.misconceptions)]
    assert got == [[mid for mid, _ in hits] for hits in expected]
    assert got_plain == [[mid for mid, _ in hits] for hits in alone]
    assert got != got_plain


def test_eval_retrieval_with_contrast(tmp_path, monkeypatch):
    """On a real slice of Eedi in a temporary cache: the unlabelled distractors are encoded as siblings."""
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "cache"))
    mini = write_mini_eedi(tmp_path / "data")
    items = load_split("eedi", "train", mini).items
    assert count_queries(items, 0.4) == count_queries(items) + len(unlabelled_wrong(items))
    args = [
        "eval",
        "retrieval",
        "--dataset",
        "eedi",
        "--split",
        "train",
        "--format",
        "answer_first",
        "--data-dir",
        str(mini),
    ]
    for contrast in ("0", "0.4"):
        result = runner.invoke(
            app, [*args, "--sibling-contrast", contrast, "--out", str(tmp_path / f"{contrast}.json")]
        )
        assert result.exit_code == 0, result.output
    plain, contrasted = (json.loads((tmp_path / f"{c}.json").read_text()) for c in ("0", "0.4"))
    assert contrasted["sibling_contrast"] == 0.4 and plain["sibling_contrast"] == 0.0
    assert contrasted["scores"][0]["queries"] == plain["scores"][0]["queries"] == count_queries(items)
    assert contrasted["scores"][0]["map_at_k"] != plain["scores"][0]["map_at_k"]
    result = runner.invoke(app, [*args, "--sibling-contrast", "1.5"])
    assert result.exit_code == 2
    result = runner.invoke(app, [*args, "--hubness", "0.75", "--hubness-k", "20", "--out", str(tmp_path / "hub.json")])
    assert result.exit_code == 0, result.output
    hub = json.loads((tmp_path / "hub.json").read_text())
    assert hub["hubness"] == 0.75 and hub["hubness_k"] == 20 and hub["scores"][0]["queries"] == count_queries(items)
    assert hub["scores"][0]["map_at_k"] != plain["scores"][0]["map_at_k"]


# -- hubness ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_index(data_root):
    return load_or_build_misconception_index("eedi", Embedder("minilm-l6"), data_root)


@pytest.fixture(scope="module")
def bank(data_root, minilm_index):
    items = load_split("eedi", "train", data_root).items[:30]
    return minilm_index.embedder.encode(bank_texts(items, QUERY_FORMATS["answer_first"]), kind="query")


def test_hub_scores_are_the_mean_of_the_k_highest_cosines(minilm_index, bank):
    assert len(bank) == 90  # every distractor of 30 questions
    cosines = minilm_index.vectors @ bank.T
    expected = np.sort(cosines, axis=1)[:, -10:].mean(axis=1)
    assert np.allclose(minilm_index.hub_scores(bank, 10), expected, atol=1e-5)
    assert np.allclose(minilm_index.hub_scores(bank, 1000), cosines.mean(axis=1), atol=1e-5)  # k capped at the bank
    assert hub_penalty(minilm_index, bank, 0.0, 10) is None and hub_penalty(minilm_index, bank, 0.5, 91) is None
    assert np.allclose(hub_penalty(minilm_index, bank, 0.5, 10), 0.5 * expected, atol=1e-5)
    with pytest.raises(ValueError, match="at least one query"):
        minilm_index.hub_scores(bank[:0])


def test_encode_reusing_encodes_only_the_texts_it_does_not_know(minilm_index, monkeypatch):
    embedder = minilm_index.embedder
    texts = ["a third of 6 is 2", "half of 10 is 4", "a third of 6 is 2", "0.5 is bigger than 0.25"]
    plain = embedder.encode(texts, kind="query")
    known = {texts[0]: plain[0], texts[3]: plain[3]}
    encoded, encode = [], embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda t, *a, **k: encoded.extend(t) or encode(t, *a, **k))
    out = embedder.encode_reusing(texts, known)
    assert encoded == ["half of 10 is 4"]  # the one unknown text, once
    assert np.allclose(out, plain, atol=1e-5) and out.shape == (4, embedder.dim)
    assert embedder.encode_reusing([], known).shape == (0, embedder.dim)


def test_a_penalised_search_ranks_by_cosine_less_penalty(minilm_index, bank):
    penalty = hub_penalty(minilm_index, bank, 0.75, 50)
    hits = minilm_index.search_vectors(bank[:4], 25, penalty)
    scores = bank[:4] @ minilm_index.vectors.T - penalty
    ids = [m.id for m in minilm_index.misconceptions]
    for row, found in zip(scores, hits, strict=True):
        order = np.argsort(-row, kind="stable")[:25]
        assert [mid for mid, _ in found] == [ids[j] for j in order]
        assert np.allclose([s for _, s in found], row[order], atol=1e-5)
    some = [mid for mid, _ in hits[0][:5]]
    assert np.allclose(
        minilm_index.similarities(bank[0], some, penalty),
        minilm_index.similarities(bank[0], some) - penalty[[ids.index(m) for m in some]],
        atol=1e-6,
    )
    plain = minilm_index.search_vectors(bank[:4], 25)
    assert [[m for m, _ in h] for h in hits] != [[m for m, _ in h] for h in plain]  # hubs do move


def test_the_agent_penalises_hubs_with_the_split_as_bank(small_eedi, monkeypatch):
    """Eedi's defaults (contrast 0.4, hubness 0.75), votes off: the agent's lists are the penalised search
    with the whole split (60 questions) as the bank, whichever items are solved; without a split, no bank.
    The agent looks its queries up in the bank's vectors: solving encodes none of them a second time."""
    cfg = load_config(**{"agent.permutations": 1, "agent.votes": 0, "agent.query_format": "answer_first"})
    items = load_split("eedi", "train", small_eedi).items
    solver = AgentSolver(cfg, dataset="eedi", split="train", data_root=small_eedi)
    index, build = solver.resources.misconceptions, QUERY_FORMATS["answer_first"]
    assert solver.resources.query_bank[0] == bank_texts(items, build)
    encoded, encode = [], index.embedder.encode
    monkeypatch.setattr(
        index.embedder, "encode", lambda texts, *a, **k: encoded.extend(texts) or encode(texts, *a, **k)
    )
    predictions = solver(items[:2])
    monkeypatch.undo()
    assert encoded == []  # every query came from the bank
    assert "hub_penalties" in solver.agent.resources_used() and "hub_penalties" in solver.resources.__dict__
    penalty = hub_penalty(index, index.embedder.encode(bank_texts(items, build), kind="query"), 0.75, 50)
    assert np.allclose(solver.resources.hub_penalties[0], penalty, atol=1e-5)
    keys = [(it, x) for it in items[:2] for x in it.letters if x != it.answer]
    vectors = contrast_siblings(
        index.embedder.encode([build(it, x) for it, x in keys], kind="query"), [it.id for it, _ in keys], 0.4
    )
    expected = [[mid for mid, _ in hits] for hits in index.search_vectors(vectors, 25, penalty)]
    assert [p.misconceptions[x] for p in predictions for x in sorted(p.misconceptions)] == expected
    alone = AgentSolver(cfg, dataset="eedi", data_root=small_eedi)
    assert alone.resources.hub_penalties == [None]  # no split: no bank, plain cosines
    off = AgentSolver(
        load_config(**{"agent.permutations": 1, "agent.votes": 0, "agent.hubness": 0}),
        dataset="eedi",
        split="train",
        data_root=small_eedi,
    )
    assert "hub_penalties" not in off.agent.resources_used()


def test_an_ensemble_looks_every_member_s_queries_up_in_its_own_bank(small_eedi, monkeypatch):
    """Two members (MiniLM twice, each with its own index and embedder object): each member's bank is
    encoded by that member, and solving encodes no query a second time in either; the twin ranks as one."""

    def solver(**agent):
        return AgentSolver(
            load_config(**{"agent.permutations": 1, "agent.votes": 0, **agent}),
            dataset="eedi",
            split="train",
            data_root=small_eedi,
        )

    items = load_split("eedi", "train", small_eedi).items
    twins = solver(**{"agent.embedders": ["minilm-l6"]})
    members = [twins.resources.misconceptions, *twins.resources.extra_misconceptions]
    texts, banks = twins.resources.query_bank
    assert len(banks) == 2 and all(len(b) == len(texts) for b in banks)
    encoded = []
    for member in members:
        monkeypatch.setattr(
            member.embedder,
            "encode",
            lambda t, *a, _encode=member.embedder.encode, **k: encoded.extend(t) or _encode(t, *a, **k),
        )
    together = twins(items[:2])
    monkeypatch.undo()
    assert encoded == []  # neither member encoded a query: both came from the banks
    for a, b in zip(solver()(items[:2]), together, strict=True):
        assert a.misconceptions == b.misconceptions


def test_a_kaggle_run_penalises_hubs_over_its_whole_test_file(data_root, tmp_path, monkeypatch):
    """A competition input whose test file holds 20 questions (60 wrong answers, a bank above k = 50): the
    submission's lists are the agent's with that test file as the bank (votes off to keep it short). The
    input folder is named as on Kaggle, not `eedi/`, so a run that looked the bank up as a dataset split
    instead of taking its own test file would fail."""
    import csv

    monkeypatch.setenv("MCQA_THREADS", "1")
    columns = [
        "QuestionId",
        "ConstructId",
        "ConstructName",
        "SubjectId",
        "SubjectName",
        "CorrectAnswer",
        "QuestionText",
        "AnswerAText",
        "AnswerBText",
        "AnswerCText",
        "AnswerDText",
    ]
    source = data_root / "eedi"
    with (source / "train.csv").open(newline="", encoding="utf-8") as handle:
        rows = [{c: row[c] for c in columns} for row in islice(csv.DictReader(handle), 20)]
    competition, root = tmp_path / "input" / "eedi-mining-misconceptions-in-mathematics", tmp_path / "data"
    for folder in (competition, root / "eedi"):  # the Kaggle input, and the same files as a dataset folder
        folder.mkdir(parents=True)
        (folder / "misconception_mapping.csv").write_bytes((source / "misconception_mapping.csv").read_bytes())
        with (folder / "test.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("agent:\n  votes: 0\n")
    bundle, out = tmp_path / "b", tmp_path / "submission.csv"
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
    result = runner.invoke(
        app,
        ["kaggle", "run", "--task", "eedi", "--bundle", str(bundle), "--input", str(competition), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        submitted = {row["QuestionId_Answer"]: row["MisconceptionId"].split() for row in csv.DictReader(handle)}
    items = load_split("eedi", "test", root).items
    solver = AgentSolver(load_config(cfg), dataset="eedi", split="test", data_root=root)
    assert solver.resources.hub_penalties[0] is not None
    for item, p in zip(items[:3], solver(items[:3]), strict=True):
        for letter, found in p.misconceptions.items():
            assert submitted[f"{item.id}_{letter}"] == found
