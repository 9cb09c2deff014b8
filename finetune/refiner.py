"""Recipe: metric learning over frozen embeddings, the cheap alternative to fine-tuning the embedder.

The base embedder encodes every query and catalogue entry once; everything after that is small
matrix work, seconds on a CPU. Two pieces, scored apart and together on the validation split:
- the refiner: a residual linear map x -> normalize(x + A x) (A starts at zero, so training starts
  from the base model), trained with the triplet hinge max(0, d(a,p) - d(a,n) + margin) on cosine
  distance, with hard negatives taken from the base model's own top ranks and redrawn every epoch;
- the ridge head: closed-form ridge regression from a (refined) query vector to its label's vector,
  shrunk towards the identity (W = I + (QᵀQ + λI)⁻¹ Qᵀ(P - Q)), so a query moves towards where
  labelled misconceptions sit; the score of a candidate is the cosine of the mapped query with it.

The refiner is saved as a sentence-transformers folder (the base modules plus a Dense layer and a
Normalize), so `agent.embedder: OUT/model` uses it with no other change. The ridge head maps queries
only, so it is saved beside it (`ridge.npy`) and its value is reported in results.json.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from mcqa.finetune.common import RetrievalSplit, TrainRun, retrieval_data


class Config(RetrievalSplit):
    base: str = Field("minilm-l6", description="The frozen embedder: registry name or sentence-transformers folder.")
    margin: float = Field(0.1, gt=0, description="Triplet hinge margin on cosine distance.")
    hard_window: int = Field(
        30, ge=2, description="Negatives are drawn from the base model's top this many non-labels."
    )
    negatives: int = Field(8, ge=1, description="Negatives per pair per epoch.")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0, description="L2 on A: keeps the refiner close to the base space.")
    ridge_lambda: float = Field(10.0, gt=0, description="Ridge strength; larger keeps the head closer to identity.")
    max_steps: int | None = Field(None, ge=1, description="Cap on optimizer steps in all (a quick check).")


def ranked(queries: np.ndarray, catalogue: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top-k catalogue rows by cosine (rows are unit length), best first."""
    scores = queries @ catalogue.T
    top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def score(queries: np.ndarray, catalogue: np.ndarray, ids: list[str], relevant: list[list[str]], k: int) -> dict:
    from mcqa.eval.metrics import map_at_k, recall_at_k

    rankings = [[ids[j] for j in row] for row in ranked(queries, catalogue, k)]
    return {
        f"map@{k}": round(map_at_k(rankings, relevant, k), 4),
        f"recall@{k}": round(recall_at_k(rankings, relevant, k), 4),
    }


def fit_refiner(
    q: np.ndarray, p_index: np.ndarray, catalogue: np.ndarray, positives: list[set[int]], config: Config
) -> tuple[np.ndarray, dict]:
    """Train A (d x d) with the triplet hinge; returns (A, timing)."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    window = []
    for row, pos in zip(ranked(q, catalogue, config.hard_window + 8), positives, strict=True):
        window.append([j for j in row if j not in pos][: config.hard_window])
    window = np.array(window)
    A = torch.zeros(q.shape[1], q.shape[1], requires_grad=True)
    optimiser = torch.optim.AdamW([A], lr=config.learning_rate, weight_decay=config.weight_decay)
    Q, C = torch.from_numpy(q), torch.from_numpy(catalogue)

    def refine(x):
        return torch.nn.functional.normalize(x + x @ A.T, dim=-1)

    step_seconds, steps = [], 0
    for _ in range(config.epochs):
        order = rng.permutation(len(q))
        for start in range(0, len(order), config.batch_size):
            if config.max_steps and steps >= config.max_steps:
                break
            clock = time.perf_counter()
            batch = order[start : start + config.batch_size]
            cols = rng.integers(0, window.shape[1], size=(len(batch), config.negatives))
            negatives = torch.from_numpy(window[batch[:, None], cols])
            anchor = refine(Q[batch])
            positive = refine(C[torch.from_numpy(p_index[batch])])
            negative = refine(C[negatives.reshape(-1)]).reshape(len(batch), config.negatives, -1)
            d_pos = 1 - (anchor * positive).sum(-1, keepdim=True)
            d_neg = 1 - torch.einsum("bd,bnd->bn", anchor, negative)
            loss = torch.clamp(d_pos - d_neg + config.margin, min=0).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
            step_seconds.append(time.perf_counter() - clock)
    step_seconds.sort()
    return A.detach().numpy(), {
        "steps": steps,
        "median_step_s": round(step_seconds[len(step_seconds) // 2], 5) if step_seconds else None,
        "train_s": round(sum(step_seconds), 2),
    }


def ridge_head(q: np.ndarray, p: np.ndarray, lam: float) -> np.ndarray:
    """W minimising |QW - P|² + λ|W - I|², i.e. I + (QᵀQ + λI)⁻¹ Qᵀ(P - Q)."""
    d = q.shape[1]
    return np.eye(d, dtype=np.float32) + np.linalg.solve(q.T @ q + lam * np.eye(d), q.T @ (p - q)).astype(np.float32)


def save_refiner(base: str, A: np.ndarray, out) -> None:
    """The base sentence-transformers modules + Dense(I + A, no bias, identity) + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from mcqa.models import resolve
    from mcqa.rag.embedder import open_sentence_transformer

    model = open_sentence_transformer(str(resolve(base, "embedder")))
    d = A.shape[0]
    dense = Dense(d, d, bias=False, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy(np.eye(d, dtype=np.float32) + A))
    modules = [m for m in model if not isinstance(m, Normalize)] + [dense, Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save_pretrained(str(out))


def train(config: Config, run: TrainRun) -> dict:
    from mcqa.rag.embedder import Embedder
    from mcqa.rag.mining import training_pairs
    from mcqa.rag.queries import labelled_pairs, query_format

    started = time.perf_counter()
    fit, validation, misconceptions = retrieval_data(config)
    embedder = Embedder(config.base)
    ids = [m.id for m in misconceptions]
    position = {m: i for i, m in enumerate(ids)}
    clock = time.perf_counter()
    catalogue = embedder.encode_cached([m.name for m in misconceptions], "passage")
    pairs = training_pairs(fit, misconceptions, config.query_format)
    q = embedder.encode_cached([p["query"] for p in pairs], "query")
    build = query_format(config.query_format)
    val_pairs = list(labelled_pairs(validation))
    vq = embedder.encode_cached([build(item, letter) for item, letter, _ in val_pairs], "query")
    encode_s = round(time.perf_counter() - clock, 1)
    relevant = [ids_ for _, _, ids_ in val_pairs]
    labels_of: dict[str, set[int]] = {}
    for p in pairs:
        labels_of.setdefault(p["query"], set()).add(position[p["positive_id"]])
    positives = [labels_of[p["query"]] for p in pairs]
    p_index = np.array([position[p["positive_id"]] for p in pairs])

    A, stats = fit_refiner(q, p_index, catalogue, positives, config)
    refine = lambda x: unit(x + x @ A.T)  # noqa: E731
    W_base = ridge_head(q, catalogue[p_index], config.ridge_lambda)
    rq, rc = refine(q), refine(catalogue)
    W_refined = ridge_head(rq, rc[p_index], config.ridge_lambda)
    validation_scores = {
        "base": score(vq, catalogue, ids, relevant, config.k),
        "ridge": score(unit(vq @ W_base), catalogue, ids, relevant, config.k),
        "refiner": score(refine(vq), rc, ids, relevant, config.k),
        "refiner+ridge": score(unit(refine(vq) @ W_refined), rc, ids, relevant, config.k),
    }
    out = run.path / "model"
    save_refiner(config.base, A, out)
    np.save(run.path / "ridge.npy", W_refined)
    return {
        "recipe": "refiner",
        "fit_pairs": len(pairs),
        "queries": len(val_pairs),
        "encode_s": encode_s,
        "training": stats,
        "validation": validation_scores,
        "model": str(out),
        "total_s": round(time.perf_counter() - started, 1),
    }
