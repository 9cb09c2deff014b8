"""Recipe: a label classifier on frozen embeddings, for datasets whose test asks train's questions (MAP).

Logistic regression from a labelled answer's vector (its `evidence_text`, the text the label store
holds) plus a one-hot of its answer group (the question and the answer picked, `answer_group`) to its
label (MAP: `Category:Misconception` less the True_/False_ half, which the agent takes from the
answer). Why next to the kNN vote: the vote reads the 25 nearest responses, the head weighs every
training response at once and learns which answer of which question goes with which label; fused,
they beat either alone (figures in results.json and docs/results.md). Seconds to train on a CPU, after
the encoding the label store needs anyway (vectors are cached between runs).

Saved as `OUT/head.npz` (weights, bias, labels, groups: plain arrays, no pickle) and `OUT/head.json`
(embedder, query format, dataset); the agent uses it with `agent.classifier: OUT`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcqa.finetune.common import TrainRun, sample_limit

HEAD_FILE, META_FILE = "head.npz", "head.json"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("map", description="A dataset whose test asks the questions of its train split (map).")
    base: str = Field("minilm-l6", description="The frozen embedder (the agent's `agent.embedder`).")
    query_format: str = Field(
        "subject_correct",
        description="The agent's query format (evidence texts of answers without an explanation are written in it).",
    )
    C: float = Field(30.0, gt=0, description="Inverse L2 strength of the logistic regression.")
    max_iter: int = Field(500, ge=10, description="Solver iterations (lbfgs).")
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of train held out as validation (MAP: rows).")
    seed: int = Field(0, description="Seeds the fit/validation split.")
    weights: list[float] = Field(
        [0.0, 1.0, 3.0, 10.0],
        description="classifier_weight values scored on validation with the vote (0: the vote alone).",
    )
    limit: int | None = Field(None, ge=1, description="Use only this many fit and validation items (a quick check).")


class LabelClassifier:
    """The trained head: probabilities over labels for evidence vectors and their answer groups."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: list[str], groups: list[str], meta: dict):
        self.weights, self.bias, self.labels, self.meta = weights, bias, labels, meta
        self.groups = {g: i for i, g in enumerate(groups)}

    def features(self, vectors: np.ndarray, groups: list[str]) -> np.ndarray:
        """[vector, one-hot of the answer group]; a group unseen in training gets no one-hot bit."""
        onehot = np.zeros((len(groups), len(self.groups)), dtype=np.float32)
        for row, group in enumerate(groups):
            if group in self.groups:
                onehot[row, self.groups[group]] = 1.0
        return np.hstack([vectors.astype(np.float32), onehot])

    def predict(self, vectors: np.ndarray, groups: list[str]) -> np.ndarray:
        """Softmax probabilities, one row per vector, columns in `self.labels` order."""
        logits = self.features(vectors, groups) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / HEAD_FILE,
            weights=self.weights,
            bias=self.bias,
            labels=np.array(self.labels),
            groups=np.array(sorted(self.groups, key=self.groups.get)),
        )
        (folder / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> LabelClassifier:
        folder = Path(folder).expanduser()
        from mcqa.rag.vectors import StoreError

        if not (folder / HEAD_FILE).is_file() or not (folder / META_FILE).is_file():
            raise StoreError(
                f"{folder} is not a trained classifier: no {HEAD_FILE} and {META_FILE} "
                f"(train one with `mcqa train classifier`)"
            )
        with np.load(folder / HEAD_FILE, allow_pickle=False) as arrays:
            return cls(
                arrays["weights"],
                arrays["bias"],
                [str(x) for x in arrays["labels"]],
                [str(x) for x in arrays["groups"]],
                json.loads((folder / META_FILE).read_text()),
            )


def fit_head(
    vectors: np.ndarray, groups: list[str], labels: list[str], meta: dict, C: float = 30.0, max_iter: int = 500
) -> LabelClassifier:
    """Logistic regression from [vector, answer-group one-hot] to label, as a LabelClassifier (numpy only
    at inference: no sklearn object is kept)."""
    import warnings

    from mcqa.extras import require

    require("sklearn", "retrieval", "fitting the label classifier (`classifier: auto`)")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(labels))
    head = LabelClassifier(np.zeros((len(classes), 1)), np.zeros(len(classes)), classes, sorted(set(groups)), meta)
    if len(classes) < 2:
        raise ValueError(f"a classifier needs at least 2 labels, the training answers have {len(classes)}")
    model = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():  # 500 lbfgs steps: converged enough (measured: C 30 and 100 score alike)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(head.features(vectors, groups), labels)
    order = [list(model.classes_).index(c) for c in classes]
    head.weights = model.coef_[order].astype(np.float32)
    head.bias = model.intercept_[order].astype(np.float32)
    return head


def load_or_fit_classifier(store) -> LabelClassifier:
    """A head fitted on a label store's own vectors and labels (no encoding: the store holds them), with
    the recipe's defaults; cached under the store's content and embedder, so a run fits it once."""
    from mcqa.rag.cache import cache_key, indexes_dir, load_or_build

    def fit() -> LabelClassifier:
        defaults = Config()
        meta = {
            "dataset": store.source.get("dataset"),
            "embedder": store.embedder.name,
            "fitted_on": "label store",
            "query_format": store.source.get("query_format"),
            "fit_answers": len(store),
        }
        return fit_head(
            store.vectors,
            [r["group"] for r in store.records],
            [r["label"] for r in store.records],
            meta,
            defaults.C,
            defaults.max_iter,
        )

    content = store.source.get("items_sha256")
    if content is None:  # a store built in memory (a Kaggle run on a new train file): nothing to key a cache by
        return fit()
    folder = indexes_dir() / f"classifier-{store.source.get('dataset')}-{cache_key(content, store.embedder)}"
    return load_or_build(folder, LabelClassifier.load, fit)


def train(config: Config, run: TrainRun) -> dict:
    import random

    from mcqa.agent.config import DATASET_DEFAULTS, OTHER_DEFAULTS
    from mcqa.datasets.map import full_label
    from mcqa.eval.metrics import map_at_k
    from mcqa.rag.embedder import Embedder
    from mcqa.rag.queries import query_format
    from mcqa.rag.retrieval import vote
    from mcqa.rag.splits import load_items
    from mcqa.rag.store import LabelStore, label_records
    from mcqa.rag.vectors import build_index

    started = time.perf_counter()
    fit = load_items(config.dataset, "fit", fraction=config.fraction, seed=config.seed)
    validation = load_items(config.dataset, "validation", fraction=config.fraction, seed=config.seed)
    rng = random.Random(config.seed)
    fit, validation = (sample_limit(items, config.limit, rng) for items in (fit, validation))
    embedder = Embedder(config.base)
    build = query_format(config.query_format)
    fit_records, val_records = label_records(fit, build), label_records(validation, build)
    groups, labels = [r["group"] for r in fit_records], [r["label"] for r in fit_records]
    clock = time.perf_counter()
    vectors = embedder.encode_cached([r["text"] for r in fit_records], "query")
    v_vectors = embedder.encode_cached([r["text"] for r in val_records], "query")
    encode_s = round(time.perf_counter() - clock, 1)

    clock = time.perf_counter()
    meta = {
        "dataset": config.dataset,
        "embedder": embedder.name,
        "query_format": config.query_format,
        "fit_answers": len(labels),
    }
    head = fit_head(vectors, groups, labels, meta, config.C, config.max_iter)
    train_s = round(time.perf_counter() - clock, 1)
    out = head.save(run.path / "model")

    # Scored as the agent ranks: votes of the label store (from the same vectors) + weight * P(label).
    defaults = {**OTHER_DEFAULTS, **DATASET_DEFAULTS.get(config.dataset, {})}
    votes_k, threshold = defaults["votes"] or 25, defaults["vote_threshold"]
    store = LabelStore(fit_records, build_index(vectors), embedder)
    v_groups = [r["group"] for r in val_records]
    neighbours = store.search_vectors(v_vectors, v_groups, [r["item"] for r in val_records], votes_k)
    probs = head.predict(v_vectors, v_groups)

    by_id = {item.id: item for item in validation}

    def ranked(item, scores: dict[str, float]) -> list[str]:
        order = sorted(scores, key=lambda label: -scores[label])
        return [full_label(item.chosen == item.answer, x) if item.chosen is not None else x for x in order]

    k = 3 if config.dataset == "map" else 25
    items = [by_id[r["item"]] for r in val_records]
    gold = [ranked(item, {r["label"]: 1.0}) for item, r in zip(items, val_records, strict=True)]
    scores = {}
    for weight in config.weights:
        rankings = []
        for item, near, row in zip(items, neighbours, probs, strict=True):
            fused = vote(near, threshold)
            for label, p in zip(head.labels, row, strict=True):
                fused[label] = fused.get(label, 0.0) + weight * float(p)
            rankings.append(ranked(item, fused))
        scores[f"votes+{weight:g}*classifier"] = round(map_at_k(rankings, gold, k), 4)
    head_alone = [
        ranked(item, dict(zip(head.labels, map(float, row), strict=True)))
        for item, row in zip(items, probs, strict=True)
    ]
    scores["classifier"] = round(map_at_k(head_alone, gold, k), 4)
    return {
        "recipe": "classifier",
        "fit_answers": len(labels),
        "validation_answers": len(val_records),
        "labels": len(head.labels),
        "encode_s": encode_s,
        "train_s": train_s,
        "validation": {f"map@{k}": scores},
        "model": str(out),
        "total_s": round(time.perf_counter() - started, 1),
    }
