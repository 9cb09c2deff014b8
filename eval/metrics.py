"""Ranking metrics exactly as the Kaggle competitions define them.

Eedi (MAP@25) and MAP (MAP@3) score each row by the precision at the rank of its one correct label:
AP@k = sum over ranks i <= k of P(i) * rel(i) / min(|relevant|, k), which for one relevant label is
1/rank if it is in the top k, else 0. Duplicates in a ranking count once (at their first rank), as
the competitions' metric code does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _dedupe(ranked: Sequence) -> list:
    seen, out = set(), []
    for label in ranked:
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def average_precision_at_k(ranked: Sequence, relevant: Iterable, k: int) -> float:
    """AP@k of one ranking against a set of relevant labels (empty set -> 0)."""
    relevant = set(relevant)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, label in enumerate(_dedupe(ranked)[:k], start=1):
        if label in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k)


def map_at_k(rankings: Sequence[Sequence], relevants: Sequence[Iterable], k: int = 25) -> float:
    """Mean AP@k over rows; `rankings[i]` is scored against `relevants[i]`."""
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} label sets")
    if not rankings:
        return float("nan")
    return sum(average_precision_at_k(r, rel, k) for r, rel in zip(rankings, relevants)) / len(rankings)


def recall_at_k(rankings: Sequence[Sequence], relevants: Sequence[Iterable], k: int = 25) -> float:
    """Mean over rows of the share of relevant labels found in the top k."""
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} label sets")
    scores = []
    for ranked, relevant in zip(rankings, relevants):
        relevant = set(relevant)
        if relevant:
            scores.append(len(relevant & set(_dedupe(ranked)[:k])) / len(relevant))
    return sum(scores) / len(scores) if scores else float("nan")
