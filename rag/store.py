"""The three indexes the agent searches: solved items for few-shot examples, a misconception catalogue,
and labelled answers whose labels vote for a new answer's.

All are a FAISS index plus records on the same manifest machinery (mcqa.rag.vectors); they differ
in what a record is and in what a search leaves out. An example or label search never returns the
query item itself: an item found among its own examples would hand the model its answer. An example
search also leaves out copies of it (the same question and choices under another id, as when the
examples come from another dataset or a user's file that holds the item too).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcqa.extras import require
from mcqa.rag.embedder import Embedder
from mcqa.rag.queries import _clean, evidence_labels, evidence_text, item_text
from mcqa.rag.vectors import build_index, index_kind, load_folder, save_folder, search_index
from mcqa.types import Item, Misconception

if TYPE_CHECKING:
    from mcqa.rag.label_space import LabelSpace

faiss = require("faiss", "retrieval", "FAISS indexes")

EXAMPLES_KIND, MISCONCEPTIONS_KIND, LABELS_KIND = "examples", "misconceptions", "labels"


def same_question(item: Item) -> tuple[str, tuple[str, ...]]:
    """What makes two items one question whatever their ids and sources: the question and the set of
    choices, with whitespace collapsed and case folded (the choices sorted, so a shuffled copy is the
    same question). An example equal to the item being solved would hand the model its answer."""

    def norm(text: str) -> str:
        return _clean(text).casefold()

    return norm(item.question), tuple(sorted(norm(c) for c in item.choices))


class ExampleStore:
    """Solved items, searchable by how alike their questions are (`item_text`), for few-shot prompts."""

    def __init__(self, items: list[Item], index: faiss.Index, embedder: Embedder, source: dict | None = None):
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"item ids must be unique in a store; {duplicate!r} appears more than once")
        self.items, self.index, self.embedder, self.source = items, index, embedder, source or {}
        self.folder: Path | None = None  # where it was last saved or loaded from
        self._questions = [same_question(item) for item in items]

    @classmethod
    def build(
        cls,
        items: list[Item],
        embedder: Embedder,
        index: str = "flat",
        progress: bool = False,
        source: dict | None = None,
    ) -> ExampleStore:
        vectors = embedder.encode([item_text(item) for item in items], kind="passage", progress=progress)
        return cls(list(items), build_index(vectors, index), embedder, source)

    def __len__(self) -> int:
        return len(self.items)

    def search_scored(self, items: list[Item], k: int) -> list[list[tuple[Item, float]]]:
        """The k most similar stored items per query item, with cosine scores, best first, never itself:
        neither its id nor a copy of it (`same_question`) under another id or from another source."""
        if k < 1 or not items:
            return [[] for _ in items]
        queries = self.embedder.encode([item_text(item) for item in items], kind="query")
        results: list[list[tuple[Item, float]]] = [[] for _ in items]
        todo, fetch = list(range(len(items))), k + 4  # a few extra hits cover the query and its copies
        while todo:
            scores, positions = search_index(self.index, queries[todo], fetch)
            short = []
            for n, row_scores, row_positions in zip(todo, scores, positions, strict=True):
                own = same_question(items[n])
                hits = [
                    (self.items[p], float(s))
                    for s, p in zip(row_scores, row_positions, strict=True)
                    if p >= 0 and self.items[p].id != items[n].id and self._questions[p] != own
                ]
                results[n] = hits[:k]
                if len(hits) < k and fetch < len(self.items):
                    short.append(n)  # copies filled the window: look further
            todo, fetch = short, fetch * 4
        return results

    def search(self, items: list[Item], k: int) -> list[list[Item]]:
        """The k most similar stored items per query item, best first; an item never finds itself."""
        return [[hit for hit, _ in hits] for hits in self.search_scored(items, k)]

    def save(self, folder: Path) -> None:
        self.folder = save_folder(
            folder,
            EXAMPLES_KIND,
            self.embedder,
            self.index,
            [item.model_dump(mode="json") for item in self.items],
            self.source,
        )

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> ExampleStore:
        """A saved store; `EmbedderMismatch` if `embedder` is not the one that built it."""
        index, records, manifest = load_folder(folder, EXAMPLES_KIND, embedder)
        store = cls([Item.model_validate(r) for r in records], index, embedder, manifest.get("source"))
        store.folder = Path(folder)
        return store


class MisconceptionIndex:
    """A misconception catalogue (Eedi's 2,587, MAP's labels), searchable by query text."""

    def __init__(
        self, misconceptions: list[Misconception], index: faiss.Index, embedder: Embedder, source: dict | None = None
    ):
        self.misconceptions, self.index, self.embedder, self.source = misconceptions, index, embedder, source or {}
        self.folder: Path | None = None  # where it was last saved or loaded from
        self._names = {m.id: m.name for m in misconceptions}
        if len(self._names) != len(misconceptions):
            raise ValueError("misconception ids must be unique in an index")
        self._positions = {m.id: p for p, m in enumerate(misconceptions)}
        self._vectors: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        misconceptions: list[Misconception],
        embedder: Embedder,
        progress: bool = False,
        source: dict | None = None,
        index: str = "flat",
    ) -> MisconceptionIndex:
        vectors = embedder.encode([m.name for m in misconceptions], kind="passage", progress=progress)
        return cls(list(misconceptions), build_index(vectors, index), embedder, source)

    def __len__(self) -> int:
        return len(self.misconceptions)

    def search_vectors(
        self, vectors: np.ndarray, k: int, penalty: np.ndarray | None = None
    ) -> list[list[tuple[str, float]]]:
        """Search with query vectors already encoded (evaluation encodes once and searches many times).

        `penalty` (one number per catalogue row, `hub_scores` times a weight) is subtracted from every
        cosine before ranking; the search is then exact over the whole catalogue.
        """
        if penalty is None:
            scores, positions = search_index(self.index, vectors, k)
        else:
            scores = np.asarray(vectors, dtype=np.float32) @ self.vectors.T - penalty
            positions = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(scores, positions, axis=1)
        return [
            [(self.misconceptions[p].id, float(s)) for s, p in zip(row_scores, row_positions, strict=True) if p >= 0]
            for row_scores, row_positions in zip(scores, positions, strict=True)
        ]

    @property
    def vectors(self) -> np.ndarray:
        """Every catalogue row's vector, in catalogue order (small: Eedi's 2,587 rows, read back once)."""
        if self._vectors is None:
            self._vectors = self.index.reconstruct_n(0, self.index.ntotal)
        return self._vectors

    def similarities(self, vector: np.ndarray, ids: list[str], penalty: np.ndarray | None = None) -> np.ndarray:
        """The cosine of one query vector with each of these misconceptions, whether a search would
        return them or not (an ensemble scores every candidate any of its embedders found), less
        `penalty` as `search_vectors` subtracts it."""
        rows = [self._positions[m] for m in ids]
        scores = self.vectors[rows] @ np.asarray(vector, dtype=np.float32)
        return scores if penalty is None else scores - penalty[rows]

    def hub_scores(self, bank: np.ndarray, k: int = 50) -> np.ndarray:
        """Per catalogue row, the mean of its `k` highest cosines with the `bank` of query vectors.

        Why: some misconceptions ("hubs", written in general words) sit near most queries and crowd the
        top of every list. Subtracting a weight times this score (CSLS, Conneau et al. 2018, on a bank of
        the queries being solved) lowers them by how near they are to queries in general, not to this one.
        """
        bank = np.asarray(bank, dtype=np.float32)
        if not len(bank):
            raise ValueError("hub scores need a bank of at least one query vector")
        k = min(k, len(bank))
        cosines = self.vectors @ bank.T
        return np.partition(cosines, len(bank) - k, axis=1)[:, len(bank) - k :].mean(axis=1)

    def search(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        """(misconception id, cosine score) per query, best first."""
        return self.search_vectors(self.embedder.encode(queries, kind="query"), k)

    def name_of(self, misconception_id: str) -> str:
        try:
            return self._names[misconception_id]
        except KeyError:
            raise KeyError(f"no misconception {misconception_id!r} in this index") from None

    def save(self, folder: Path) -> None:
        self.folder = save_folder(
            folder,
            MISCONCEPTIONS_KIND,
            self.embedder,
            self.index,
            [m.model_dump(mode="json") for m in self.misconceptions],
            self.source,
        )

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> MisconceptionIndex:
        """A saved index; `EmbedderMismatch` if `embedder` is not the one that built it."""
        index, records, manifest = load_folder(folder, MISCONCEPTIONS_KIND, embedder)
        loaded = cls([Misconception.model_validate(r) for r in records], index, embedder, manifest.get("source"))
        loaded.folder = Path(folder)
        return loaded


def answer_group(item: Item, letter: str) -> str:
    """Which answers a label search stays among: the same answer (by its text) to the same question."""
    from mcqa.rag.splits import question_of

    return f"{question_of(item)}\x1f{_clean(item.choice(letter))}"


def label_records(items: list[Item], build_query) -> list[dict]:
    """One record per labelled answer of `items`: its item id, `answer_group`, label (`evidence_labels`)
    and text (`evidence_text`, `build_query` being the agent's query format)."""
    return [
        {
            "item": item.id,
            "group": answer_group(item, letter),
            "label": label,
            "text": evidence_text(item, letter, build_query),
        }
        for item in items
        for letter, label in evidence_labels(item)
    ]


class LabelStore:
    """Labelled answers of solved items, whose labels vote for a new answer's (`mcqa.rag.retrieval.vote`).

    A record is one labelled answer: an Eedi distractor with its misconception id, or a MAP student
    response with its `Category:Misconception` less the True_/False_ half (`evidence_labels`). Why:
    the catalogue has only a name per misconception, while the train split shows thousands of answers
    a label was given to; a new answer close to one of them likely shares its label (on MAP, where
    the same 15 questions recur, that alone scores MAP@3 0.888 against the catalogue's 0.419).

    A search stays among the answers to the same question with the same answer text (`answer_group`)
    when the store holds any besides the query's own (MAP's test asks train's questions); otherwise it
    covers every record (Eedi's test questions are new). The query item's own records never come back.
    """

    def __init__(self, records: list[dict], index: faiss.Index, embedder: Embedder, source: dict | None = None):
        if index_kind(index) != "flat":
            raise ValueError("a label store needs a flat index (its group searches read the vectors back)")
        self.records, self.index, self.embedder, self.source = records, index, embedder, source or {}
        self.folder: Path | None = None  # where it was last saved or loaded from
        self._vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        self._items = np.array([r["item"] for r in records], dtype=object)
        groups: dict[str, list[int]] = {}
        for position, record in enumerate(records):
            groups.setdefault(record["group"], []).append(position)
        self._groups = {g: np.array(p) for g, p in groups.items()}

    @classmethod
    def build(
        cls, items: list[Item], embedder: Embedder, build_query, progress: bool = False, source: dict | None = None
    ) -> LabelStore:
        """Every labelled answer of `items` (`label_records`)."""
        records = label_records(items, build_query)
        # Both sides of a search are answers, so both are encoded as queries (the same format); cached
        # on disk, as `mcqa train classifier` encodes the same texts.
        vectors = embedder.encode_cached([r["text"] for r in records], kind="query", progress=progress)
        if not records:
            vectors = np.zeros((0, embedder.dim), np.float32)
        return cls(records, build_index(vectors, "flat"), embedder, source)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors, in record order (what a classifier on the store trains on)."""
        return self._vectors

    @cached_property
    def label_space(self) -> LabelSpace:
        """Per answer group, the labels its records carry (mcqa.rag.label_space.LabelSpace, for
        `agent.label_space: question`): derived from the records on first use, once per store, so
        it needs nothing beyond what a store (a Kaggle bundle's included) already holds."""
        from mcqa.rag.label_space import LabelSpace

        return LabelSpace(self.records)

    def search(self, texts: list[str], groups: list[str], exclude: list[str], k: int) -> list[list[tuple[str, float]]]:
        """(label, cosine) of the k nearest labelled answers per query text, best first.

        `groups[i]` is the query's `answer_group`, `exclude[i]` its item id (whose records are skipped).
        """
        if not texts or not self.records:
            return [[] for _ in texts]
        return self.search_vectors(self.embedder.encode(texts, kind="query"), groups, exclude, k)

    def search_vectors(
        self, queries: np.ndarray, groups: list[str], exclude: list[str], k: int
    ) -> list[list[tuple[str, float]]]:
        """`search` with the query texts already encoded."""
        if not (len(queries) == len(groups) == len(exclude)):
            raise ValueError(f"{len(queries)} queries, {len(groups)} groups and {len(exclude)} exclusions")
        if not len(queries) or not self.records:
            return [[] for _ in range(len(queries))]
        results: list[list[tuple[str, float]] | None] = [None] * len(queries)
        everywhere = []
        for n, (vector, group, own) in enumerate(zip(queries, groups, exclude, strict=True)):
            positions = self._groups.get(group, np.zeros(0, int))
            positions = positions[self._items[positions] != own]
            if not len(positions):
                everywhere.append(n)
                continue
            scores = self._vectors[positions] @ vector
            top = np.argsort(-scores, kind="stable")[:k]
            results[n] = [(self.records[positions[j]]["label"], float(scores[j])) for j in top]
        if everywhere:
            # A few extra hits cover the query item's own records (an Eedi item has at most three).
            scores, positions = search_index(self.index, queries[everywhere], k + 4)
            for n, row_scores, row_positions in zip(everywhere, scores, positions, strict=True):
                hits = [
                    (self.records[p]["label"], float(s))
                    for s, p in zip(row_scores, row_positions, strict=True)
                    if p >= 0 and self.records[p]["item"] != exclude[n]
                ]
                results[n] = hits[:k]
        return results

    def save(self, folder: Path) -> None:
        self.folder = save_folder(folder, LABELS_KIND, self.embedder, self.index, self.records, self.source)

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> LabelStore:
        """A saved store; `EmbedderMismatch` if `embedder` is not the one that built it."""
        index, records, manifest = load_folder(folder, LABELS_KIND, embedder, encoded_as="query")
        store = cls(records, index, embedder, manifest.get("source"))
        store.folder = Path(folder)
        return store
