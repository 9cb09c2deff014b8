"""Hard negatives for embedder training: for each (query, misconception) pair, misconceptions the current
embedder ranks close to the query but that are not labelled for it.

The ranking, the rank window and the exclusion of positives are sentence-transformers'
`mine_hard_negatives` (with FAISS); this module only turns labelled items into its input, applies
the Embedder's formats, and maps its output back to catalogue names and ids. Texts in the output are
raw (no instruction format): the trainer applies the formats it trains with.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

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
    return [{"query": build(item, letter_), "positive": names[mid], "positive_id": mid,
             "item_id": item.id, "letter": letter_}
            for item, letter_, ids in labelled_pairs(items) for mid in ids if mid in names]


def mine(pairs: list[dict], misconceptions: list[Misconception], embedder: Embedder, rank_min: int = 2,
         rank_max: int = 200, n: int = 10, sampling: str = "random", seed: int = 0,
         verbose: bool = False) -> list[dict]:
    """`pairs` with `negatives` (names) and `negative_ids` added: `n` of them, from ranks [rank_min, rank_max).

    Ranks count 0-based among the catalogue entries that are not a positive of the query (every label
    of a query that appears more than once counts as its positive), so a known positive is never a
    negative. `sampling="random"` draws n from the window (seeded), `"top"` takes its first n. A pair
    for which fewer than n candidates remain is dropped.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if not 0 <= rank_min < rank_max:
        raise ValueError(f"need 0 <= rank_min < rank_max, got [{rank_min}, {rank_max})")
    if n > rank_max - rank_min:
        raise ValueError(f"cannot draw {n} negatives from ranks [{rank_min}, {rank_max})")
    if not pairs:
        return []
    positives_per_query: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        positives_per_query[pair["query"]].add(pair["positive"])
    needed = rank_max + max(len(p) for p in positives_per_query.values())
    corpus_names = list(dict.fromkeys(m.name for m in misconceptions))
    if needed > len(corpus_names):
        raise ValueError(f"ranks up to {rank_max} need a catalogue of at least {needed} distinct names, "
                         f"got {len(corpus_names)}: lower rank_max")

    queries = embedder.format([p["query"] for p in pairs], "query")
    positives = embedder.format([p["positive"] for p in pairs], "passage")
    corpus = embedder.format(corpus_names, "passage")
    raw_name = dict(zip(corpus, corpus_names)) | dict(zip(positives, (p["positive"] for p in pairs)))
    id_of = {}
    for m in misconceptions:
        id_of.setdefault(m.name, m.id)  # a name listed twice (Eedi has one) keeps its first id

    state = random.getstate()  # its "random" sampling uses the global generator: seed it, then put it back
    random.seed(seed)
    try:
        mined = mine_hard_negatives(
            Dataset.from_dict({"query": queries, "positive": positives}), embedder.model,
            anchor_column_name="query", positive_column_name="positive", corpus=corpus,
            range_min=rank_min, range_max=rank_max, num_negatives=n, sampling_strategy=sampling,
            query_prompt="", corpus_prompt="", output_format="n-tuple", batch_size=embedder.batch_size,
            use_faiss=True, verbose=verbose)
    finally:
        random.setstate(state)

    pending: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for formatted_query, formatted_positive, pair in zip(queries, positives, pairs):
        pending[formatted_query, formatted_positive].append(pair)
    rows = []
    negative_columns = [f"negative_{i}" for i in range(1, n + 1)]
    for record in mined:
        pair = pending[record["query"], record["positive"]].pop(0)
        negatives = [raw_name[record[c]] for c in negative_columns]
        rows.append({**pair, "negatives": negatives, "negative_ids": [id_of[name] for name in negatives]})
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
