"""How well the embedder alone finds the labelled misconception of a wrong answer, per query format.

Every labelled wrong answer of the items is one query; it is scored by MAP@k and Recall@k (the Eedi
competition metric, from mcqa.eval.metrics) against the whole catalogue. This is the number that
picks `DEFAULT_QUERY_FORMAT` and that a fine-tuned embedder has to beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from mcqa.eval.metrics import map_at_k, recall_at_k
from mcqa.rag.queries import labelled_pairs, query_format
from mcqa.rag.store import MisconceptionIndex
from mcqa.types import Item


@dataclass
class FormatScore:
    format: str
    queries: int
    map_at_k: float
    recall_at_k: float
    k: int
    encode_s: float
    search_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def score_format(items: list[Item], index: MisconceptionIndex, format_name: str, k: int = 25,
                 on_progress: Callable[[int], None] | None = None) -> FormatScore:
    """MAP@k and Recall@k of one query format over every labelled wrong answer of `items`."""
    build = query_format(format_name)
    pairs = list(labelled_pairs(items))
    texts = [build(item, letter_) for item, letter_, _ in pairs]
    started = time.perf_counter()
    vectors = index.embedder.encode(texts, kind="query", progress=on_progress or False)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    hits = index.search_vectors(vectors, k)
    search_s = time.perf_counter() - started
    rankings = [[mid for mid, _ in row] for row in hits]
    relevants = [ids for _, _, ids in pairs]
    return FormatScore(format_name, len(pairs), map_at_k(rankings, relevants, k), recall_at_k(rankings, relevants, k),
                       k, round(encode_s, 3), round(search_s, 4))


def count_queries(items: list[Item]) -> int:
    return sum(1 for _ in labelled_pairs(items))


def fuse_rerank(retrieval: list[float], rerank: list[float], weight: float | None) -> list[float]:
    """The score a reranked head is sorted by: the reranker's own, or z(retrieval) + weight * z(rerank).

    Why fuse: a CrossEncoder trained on a few thousand labelled answers is right about some
    candidates and noisy about the rest, and sorting by its score alone throws away what retrieval
    knew (an 80-step reranker alone took MAP@25 from 0.252 to 0.140). Standardising both score lists
    over the same head (z-scores) makes `weight` independent of either model's score scale.
    `weight=None` keeps the reranker's scores unchanged.
    """
    import numpy as np

    if weight is None:
        return [float(s) for s in rerank]
    if len(retrieval) != len(rerank):
        raise ValueError(f"{len(retrieval)} retrieval scores but {len(rerank)} rerank scores")
    if not rerank:
        return []

    def z(values: list[float]) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        spread = array.std()
        return (array - array.mean()) / spread if spread > 0 else np.zeros_like(array)

    return [float(s) for s in z(retrieval) + weight * z(rerank)]


def vote(neighbours: list[tuple[str, float]], threshold: float) -> dict[str, float]:
    """Each labelled neighbour's vote for its label: max(0, cosine - threshold) / (1 - threshold), summed.

    Why a threshold and no normalisation: on Eedi a neighbour's label is right only when the two
    wrong answers are near-duplicates, and a vote from a merely similar one pushes a seen label above
    an unseen right one. Unnormalised, a query with no close neighbour gets (almost) no votes and
    keeps its retrieval order; normalised shares would hand every query a full vote. Measured with
    MiniLM on Eedi (inner splits of fit): threshold 0.9 kept unseen MAP@25 within 0.001 while seen
    gained 0.10; 0.7 and below cost unseen 0.026 or more; on the shared `validation-unseen` 0.9 still
    cost 0.008, so Eedi's default is 0.97 (figures in agent/config.py).
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    votes: dict[str, float] = {}
    for label, similarity in neighbours:
        if similarity > threshold:
            votes[label] = votes.get(label, 0.0) + (similarity - threshold) / (1 - threshold)
    return votes


def fuse_votes(hits: list[tuple[str, float]], votes: dict[str, float], weight: float) -> list[tuple[str, float]]:
    """Retrieval hits and label votes as one ranking: cosine + weight * votes, best first.

    A voted label that retrieval did not return (MAP's `Correct:NA`, or a misconception past the
    candidate list) starts from the lowest retrieved score, so it needs votes to climb.
    """
    floor = min((score for _, score in hits), default=0.0)
    scores = dict(hits)
    for label in votes:
        scores.setdefault(label, floor)
    fused = [(label, score + weight * votes.get(label, 0.0)) for label, score in scores.items()]
    return sorted(fused, key=lambda h: -h[1])
