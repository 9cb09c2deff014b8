"""Hard negatives for embedder training: for each (query, misconception) pair, misconceptions the current
embedder ranks close to the query but that are not labelled for it.

The ranking is an exact inner-product search over the whole catalogue (a few thousand names: one
matrix product), so the window is exact and a positive can never slip in. Texts in the output are
raw (no instruction format): the trainer applies the formats it trains with.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mcqa.rag.embedder import Embedder
from mcqa.rag.queries import labelled_pairs, query_format
from mcqa.types import Item, Misconception

SAMPLING = ("random", "top")


def training_pairs(items: list[Item], misconceptions: list[Misconception], format_name: str) -> list[dict]:
    """One {query, positive, positive_id, item_id, letter} per labelled wrong answer and label.

    Labels missing from the catalogue are left out: they have no text to train towards.
    """
    names = {m.id: m.name for m in misconceptions}
    build = query_format(format_name)
    return [
        {
            "query": build(item, letter_),
            "positive": names[mid],
            "positive_id": mid,
            "item_id": item.id,
            "letter": letter_,
        }
        for item, letter_, ids in labelled_pairs(items)
        for mid in ids
        if mid in names
    ]


def mine(
    pairs: list[dict],
    misconceptions: list[Misconception],
    embedder: Embedder,
    rank_min: int = 2,
    rank_max: int = 200,
    n: int = 10,
    sampling: str = "random",
    seed: int = 0,
    verbose: bool = False,
) -> list[dict]:
    """`pairs` with `negatives` (names) and `negative_ids` added: `n` of them, from ranks [rank_min, rank_max).

    Ranks count 0-based among the catalogue entries that are not a positive of the query (every label
    of a query that appears more than once counts as its positive), so a known positive is never a
    negative. `sampling="random"` draws n from the window (seeded), `"top"` takes its first n. A pair
    for which fewer than n candidates remain is dropped.
    """
    check_window(rank_min, rank_max, n, sampling)
    if not pairs:
        return []
    names = catalogue_names(misconceptions)
    queries = embedder.encode([p["query"] for p in pairs], "query", progress=verbose)
    return mine_vectors(
        pairs,
        queries,
        names,
        embedder.encode(list(names), "passage", progress=verbose),
        rank_min,
        rank_max,
        n,
        sampling,
        seed,
    )


def check_window(rank_min: int, rank_max: int, n: int, sampling: str) -> None:
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if not 0 <= rank_min < rank_max:
        raise ValueError(f"need 0 <= rank_min < rank_max, got [{rank_min}, {rank_max})")
    if n > rank_max - rank_min:
        raise ValueError(f"cannot draw {n} negatives from ranks [{rank_min}, {rank_max})")


def catalogue_names(misconceptions: list[Misconception]) -> dict[str, str]:
    """Distinct names in catalogue order, each with its first id (Eedi lists one name twice)."""
    names: dict[str, str] = {}
    for m in misconceptions:
        names.setdefault(m.name, m.id)
    return names


def mine_vectors(
    pairs: list[dict],
    query_vectors: np.ndarray,
    names: dict[str, str],
    name_vectors: np.ndarray,
    rank_min: int,
    rank_max: int,
    n: int,
    sampling: str = "random",
    seed: int = 0,
) -> list[dict]:
    """`mine` on vectors already encoded (rows of unit length; `names` as `catalogue_names` gives them).

    The training recipes encode the catalogue once per model and use it both to score the model and
    to mine its next round; this is the part of `mine` that needs no model.
    """
    check_window(rank_min, rank_max, n, sampling)
    positives_per_query: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        positives_per_query[pair["query"]].add(pair["positive"])
    text = list(names)
    needed = rank_max + max((len(p) for p in positives_per_query.values()), default=0)
    if needed > len(text):
        raise ValueError(
            f"ranks up to {rank_max} need a catalogue of at least {needed} distinct names, "
            f"got {len(text)}: lower rank_max"
        )
    scores = np.asarray(query_vectors, dtype=np.float32) @ np.asarray(name_vectors, dtype=np.float32).T
    top = np.argpartition(-scores, kth=needed - 1, axis=1)[:, :needed]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    rng = random.Random(seed)
    rows = []
    for pair, row in zip(pairs, top, strict=True):
        positives = positives_per_query[pair["query"]]
        window = [text[j] for j in row if text[j] not in positives][rank_min:rank_max]
        if len(window) < n:
            continue
        negatives = rng.sample(window, n) if sampling == "random" else window[:n]
        rows.append({**pair, "negatives": negatives, "negative_ids": [names[name] for name in negatives]})
    return rows


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    """Write rows as JSON lines (parent folders made); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    """The rows `write_jsonl` wrote."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
