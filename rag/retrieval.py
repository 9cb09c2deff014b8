"""How well the embedder alone finds the labelled misconception of a wrong answer, per query format,
and how the agent combines scores: several embedders' lists (ensembles), retrieval with a reranker,
retrieval with label votes.

Every labelled wrong answer of the items is one query; it is scored by MAP@k and Recall@k (the Eedi
competition metric, from mcqa.eval.metrics) against the whole catalogue. This is the number that
picks `DEFAULT_QUERY_FORMAT` and that a fine-tuned embedder has to beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mcqa.eval.metrics import map_at_k, recall_at_k
from mcqa.rag.queries import labelled_pairs, query_format, wrong_letters
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


def score_format(
    items: list[Item],
    index: MisconceptionIndex | list[MisconceptionIndex],
    format_name: str,
    k: int = 25,
    on_progress: Callable[[int], None] | None = None,
    fusion: str = "zsum",
    weights: Sequence[float] | None = None,
    candidates: int = 50,
    contrast: float = 0.0,
    hubness: float = 0.0,
    hubness_k: int = 50,
) -> FormatScore:
    """MAP@k and Recall@k of one query format over every labelled wrong answer of `items`.

    `index` may be a list, an ensemble (one index per embedder, the first being the agent's `embedder`):
    then each embedder encodes the queries and retrieves `candidates` (the agent's setting), and the
    lists are fused (`search_fused` with `fusion` and `weights`) as the agent fuses them. `contrast` and
    `hubness` are the agent's `sibling_contrast` and `hubness`: every wrong answer of the items, labelled or
    not, is encoded, as a sibling and into the bank of queries (the agent's bank is the split being solved).
    """
    indexes = index if isinstance(index, list) else [index]
    build = query_format(format_name)
    pairs = list(labelled_pairs(items))
    texts = [build(item, letter_) for item, letter_, _ in pairs]
    groups = [item.id for item, _, _ in pairs]
    if contrast or hubness:  # the unlabelled wrong answers join as siblings and bank queries only
        extra = unlabelled_wrong(items)
        texts += [build(item, x) for item, x in extra]
        groups += [item.id for item, _ in extra]
    started = time.perf_counter()
    vectors = [ix.embedder.encode(texts, kind="query", progress=on_progress or False) for ix in indexes]
    penalties = [hub_penalty(ix, v, hubness, hubness_k) for ix, v in zip(indexes, vectors, strict=True)]
    vectors = [contrast_siblings(v, groups, contrast)[: len(pairs)] for v in vectors]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    if len(indexes) == 1:
        hits = indexes[0].search_vectors(vectors[0], k, penalties[0])
    else:
        hits = [row[:k] for row in search_fused(indexes, vectors, max(k, candidates), fusion, weights, penalties)]
    search_s = time.perf_counter() - started
    rankings = [[mid for mid, _ in row] for row in hits]
    relevants = [ids for _, _, ids in pairs]
    return FormatScore(
        format_name,
        len(pairs),
        map_at_k(rankings, relevants, k),
        recall_at_k(rankings, relevants, k),
        k,
        round(encode_s, 3),
        round(search_s, 4),
    )


def unlabelled_wrong(items: list[Item]) -> list[tuple[Item, str]]:
    """(item, letter) of every wrong answer the agent would query (`wrong_letters`) that carries no label:
    the siblings `contrast_siblings` and the bank of `hub_penalty` need besides the labelled ones."""
    labelled = {(item.id, letter_) for item, letter_, _ in labelled_pairs(items)}
    return [(item, x) for item in items for x in wrong_letters(item) if (item.id, x) not in labelled]


def count_queries(items: list[Item], every_wrong_answer: bool = False) -> int:
    """The texts `score_format` encodes: the labelled wrong answers, and the unlabelled ones too when it
    needs them (sibling contrast, hubness)."""
    return sum(1 for _ in labelled_pairs(items)) + (len(unlabelled_wrong(items)) if every_wrong_answer else 0)


def bank_texts(items: list[Item], build: Callable[[Item, str], str]) -> list[str]:
    """The bank of queries behind hubness penalties: every wrong answer of the items (`wrong_letters`),
    labelled or not, in the query format."""
    return [build(item, x) for item in items for x in wrong_letters(item)]


def hub_penalty(index: MisconceptionIndex, bank: np.ndarray, weight: float, k: int = 50) -> np.ndarray | None:
    """`weight` x `index.hub_scores(bank, k)`, what the search subtracts from each misconception's cosine;
    None (no penalty) when `weight` is 0 or the bank holds fewer than `k` queries, too few to tell a
    misconception near queries in general from one near these few.
    """
    if not weight or len(bank) < k:
        return None
    return (weight * index.hub_scores(bank, k)).astype(np.float32)


def zscores(values) -> np.ndarray:
    """(x - mean) / std of a score list; all zeros when the list is flat (it then says nothing)."""
    array = np.asarray(values, dtype=np.float64)
    spread = array.std() if array.size else 0.0
    return (array - array.mean()) / spread if spread > 0 else np.zeros_like(array)


def fuse_rerank(retrieval: list[float], rerank: list[float], weight: float | None) -> list[float]:
    """The score a reranked head is sorted by: the reranker's own, or z(retrieval) + weight * z(rerank).

    Why fuse: a CrossEncoder trained on a few thousand labelled answers is right about some
    candidates and noisy about the rest, and sorting by its score alone throws away what retrieval
    knew (an 80-step reranker alone took MAP@25 from 0.252 to 0.140). Standardising both score lists
    over the same head (z-scores) makes `weight` independent of either model's score scale.
    `weight=None` keeps the reranker's scores unchanged.
    """
    if weight is None:
        return [float(s) for s in rerank]
    if len(retrieval) != len(rerank):
        raise ValueError(f"{len(retrieval)} retrieval scores but {len(rerank)} rerank scores")
    if not rerank:
        return []
    return [float(s) for s in zscores(retrieval) + weight * zscores(rerank)]


def contrast_siblings(vectors: np.ndarray, groups: Sequence[str], weight: float) -> np.ndarray:
    """Each query vector minus `weight` x the mean of its siblings' (the other queries of its group: the
    other wrong answers of the same question), back to unit length; a query without siblings is unchanged.

    Why: cos(q - w * mean(q_sib), m) ranks misconception m by s(q, m) - w * mean s(q_sib, m). Every wrong
    answer of a question shares the question's text, so its topic pulls the same generic misconceptions
    to the top of all of them; subtracting what the siblings share leaves what is particular to this wrong
    answer. Linear in the query, so it is a change of query vector, free at search time.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if weight == 0 or len(vectors) < 2:
        return vectors
    if len(groups) != len(vectors):
        raise ValueError(f"{len(vectors)} query vectors but {len(groups)} groups")
    members: dict[str, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    out = vectors.copy()
    for rows in members.values():
        if len(rows) < 2:
            continue
        block = vectors[rows]
        siblings_mean = (block.sum(axis=0, keepdims=True) - block) / (len(rows) - 1)
        out[rows] = block - weight * siblings_mean
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.where(norms > 0, norms, 1.0), dtype=np.float32)


FUSIONS = ("zsum", "rrf")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack, Clarke and Buettcher 2009): damps the top ranks' lead


def fusion_weights(n: int, weights: Sequence[float] | None) -> list[float]:
    """One weight per retriever (all 1 when None); ValueError on a wrong count or a negative weight."""
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"{n} retrievers but {len(weights)} fusion weights")
    if any(w < 0 for w in weights) or not any(weights):
        raise ValueError(f"fusion weights must be >= 0 and not all 0, got {weights}")
    return weights


def fuse_lists(
    lists: list[list[tuple[str, float]]], fusion: str = "zsum", weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Several retrievers' (id, score) lists for one query as one list over their union, best first.

    - zsum: sum of w_i * z_i(id), where z_i standardises retriever i's scores over the union (mean 0,
      spread 1, the z-scores of `fuse_rerank`), so a retriever's scale (cosines bunched near 0.6, or
      spread over 0.2-0.9) does not decide its say. An id that list i lacks counts as list i's lowest
      score; `search_fused` passes lists that score every id of the union, so nothing is guessed.
    - rrf: sum of w_i / (RRF_K + rank_i(id)), ranks from 1; an id absent from list i gets nothing from
      it. Only ranks count.
    Ties keep the order in which ids first appear (the first list's order first). The fused scores
    are on their own scale: `search_fused` maps them onto a cosine scale.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    weights = fusion_weights(len(lists), weights)
    union = list(dict.fromkeys(mid for hits in lists for mid, _ in hits))
    fused = dict.fromkeys(union, 0.0)
    for weight, hits in zip(weights, lists, strict=True):
        if fusion == "rrf":
            for rank, (mid, _) in enumerate(hits, start=1):
                fused[mid] += weight / (RRF_K + rank)
            continue
        scores = dict(hits)
        floor = min(scores.values(), default=0.0)
        for mid, z in zip(union, zscores([scores.get(mid, floor) for mid in union]), strict=True):
            fused[mid] += weight * float(z)
    return sorted(fused.items(), key=lambda h: -h[1])


def search_fused(
    indexes: list[MisconceptionIndex],
    vectors: list[np.ndarray],
    k: int,
    fusion: str = "zsum",
    weights: Sequence[float] | None = None,
    penalties: Sequence[np.ndarray | None] | None = None,
) -> list[list[tuple[str, float]]]:
    """`MisconceptionIndex.search_vectors` over an ensemble: several indexes of one catalogue, one per
    embedder, each searched with its own embedder's query vectors, fused per query (`fuse_lists`).

    Each index returns its k best; for zsum every candidate of the union is then scored by every
    embedder (a candidate one embedder found still has a cosine under the others). The fused scores
    are mapped onto the first index's cosines (their mean and spread over the union), which keeps the
    order and lets what comes after, label votes added to cosines (`fuse_votes`, weights measured on
    them), mean what it means with one embedder. Returns the fused k best per query. One index: its
    own search, unchanged. `penalties` (one per index, or None) are each member's hubness penalties
    (`hub_penalty`), subtracted from its cosines before anything else.
    """
    if len(indexes) != len(vectors) or not indexes:
        raise ValueError(f"{len(indexes)} indexes but {len(vectors)} sets of query vectors")
    penalties = list(penalties) if penalties is not None else [None] * len(indexes)
    if len(penalties) != len(indexes):
        raise ValueError(f"{len(indexes)} indexes but {len(penalties)} penalties")
    if len(indexes) == 1:
        return indexes[0].search_vectors(vectors[0], k, penalties[0])
    ids = {m.id for m in indexes[0].misconceptions}
    if any({m.id for m in index.misconceptions} != ids for index in indexes[1:]):
        raise ValueError("an ensemble's indexes must hold the same catalogue (the same misconception ids)")
    weights = fusion_weights(len(indexes), weights)
    found = [index.search_vectors(v, k, p) for index, v, p in zip(indexes, vectors, penalties, strict=True)]
    results = []
    for n in range(len(vectors[0])):
        lists = [hits[n] for hits in found]
        union = list(dict.fromkeys(mid for hits in lists for mid, _ in hits))
        exact = [index.similarities(v[n], union, p) for index, v, p in zip(indexes, vectors, penalties, strict=True)]
        if fusion == "zsum":
            lists = [list(zip(union, map(float, scores), strict=True)) for scores in exact]
        ranked = fuse_lists(lists, fusion, weights)
        cosines = np.asarray(exact[0], dtype=np.float64)
        scaled = cosines.mean() + (cosines.std() or 1.0) * zscores([s for _, s in ranked])
        results.append([(mid, float(s)) for (mid, _), s in zip(ranked[:k], scaled[:k], strict=True)])
    return results


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


@dataclass
class LabelEvidence:
    """What ranks one wrong answer's labels once its nearest labelled answers are found: its retrieval
    hits, those neighbours, each classifier's P(label), the labels its question allows and, for a MAP
    response, whether the student's answer is the right one. Kept apart from the weights, so that
    `mcqa train map-fusion` scores many weightings of one solved split with the ranking the agent uses.
    """

    hits: list[tuple[str, float]]
    neighbours: list[tuple[str, float]]
    head: dict[str, float] = field(default_factory=dict)
    seqclass: dict[str, float] = field(default_factory=dict)
    ngram: dict[str, float] = field(default_factory=dict)
    allowed: set[str] | None = None
    right: bool | None = None

    def rank(
        self,
        k: int,
        threshold: float,
        vote_weight: float,
        classifier_weight: float = 0.0,
        seqclass_weight: float = 0.0,
        ngram_weight: float = 0.0,
    ) -> list[tuple[str, float]]:
        """cosine + vote_weight * (votes of the k nearest + classifier_weight * P_head + seqclass_weight *
        P_seqclass + ngram_weight * P_ngram), best first; then, for a MAP response (`right` set), only the
        `allowed` labels (mcqa.rag.label_space.restrict_labels) with the True_/False_ half put back."""
        from mcqa.datasets.map import full_label
        from mcqa.rag.label_space import restrict_labels

        votes = vote(self.neighbours[:k], threshold)
        parts = ((self.head, classifier_weight), (self.seqclass, seqclass_weight), (self.ngram, ngram_weight))
        for probs, weight in parts:
            if weight:
                for label, p in probs.items():
                    votes[label] = votes.get(label, 0.0) + weight * p
        ranked = fuse_votes(self.hits, votes, vote_weight)
        if self.right is None:
            return ranked
        if self.allowed is not None:
            ranked = restrict_labels(ranked, self.allowed)
        return [(full_label(self.right, label), s) for label, s in ranked]
