"""The two indexes the agent searches: solved items for few-shot examples, and a misconception catalogue.

Both are a FAISS index plus records on the same manifest machinery (mcqa.rag.vectors); they differ
in what a record is and in what a search leaves out. An example search never returns the query item
itself: an item found among its own few-shot examples would hand the model its answer.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from mcqa.rag.embedder import Embedder
from mcqa.rag.queries import item_text
from mcqa.rag.vectors import build_index, load_folder, save_folder, search_index
from mcqa.types import Item, Misconception

EXAMPLES_KIND, MISCONCEPTIONS_KIND = "examples", "misconceptions"


class ExampleStore:
    """Solved items, searchable by how alike their questions are (`item_text`), for few-shot prompts."""

    def __init__(self, items: list[Item], index: faiss.Index, embedder: Embedder, source: dict | None = None):
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"item ids must be unique in a store; {duplicate!r} appears more than once")
        self.items, self.index, self.embedder, self.source = items, index, embedder, source or {}
        self.folder: Path | None = None  # where it was last saved or loaded from

    @classmethod
    def build(cls, items: list[Item], embedder: Embedder, index: str = "flat", progress: bool = False,
              source: dict | None = None) -> "ExampleStore":
        vectors = embedder.encode([item_text(item) for item in items], kind="passage", progress=progress)
        return cls(list(items), build_index(vectors, index), embedder, source)

    def __len__(self) -> int:
        return len(self.items)

    def search_scored(self, items: list[Item], k: int) -> list[list[tuple[Item, float]]]:
        """The k most similar stored items per query item, with cosine scores, best first, never itself."""
        queries = self.embedder.encode([item_text(item) for item in items], kind="query")
        # One extra hit covers the query item itself when it is in the store (ids are unique).
        scores, positions = search_index(self.index, queries, k + 1)
        results = []
        for item, row_scores, row_positions in zip(items, scores, positions):
            hits = [(self.items[p], float(s)) for s, p in zip(row_scores, row_positions)
                    if p >= 0 and self.items[p].id != item.id]
            results.append(hits[:k])
        return results

    def search(self, items: list[Item], k: int) -> list[list[Item]]:
        """The k most similar stored items per query item, best first; an item never finds itself."""
        return [[hit for hit, _ in hits] for hits in self.search_scored(items, k)]

    def save(self, folder: Path) -> None:
        self.folder = save_folder(folder, EXAMPLES_KIND, self.embedder, self.index,
                                  [item.model_dump(mode="json") for item in self.items], self.source)

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> "ExampleStore":
        """A saved store; `EmbedderMismatch` if `embedder` is not the one that built it."""
        index, records, manifest = load_folder(folder, EXAMPLES_KIND, embedder)
        store = cls([Item.model_validate(r) for r in records], index, embedder, manifest.get("source"))
        store.folder = Path(folder)
        return store


class MisconceptionIndex:
    """A misconception catalogue (Eedi's 2,587, MAP's labels), searchable by query text."""

    def __init__(self, misconceptions: list[Misconception], index: faiss.Index, embedder: Embedder,
                 source: dict | None = None):
        self.misconceptions, self.index, self.embedder, self.source = misconceptions, index, embedder, source or {}
        self.folder: Path | None = None  # where it was last saved or loaded from
        self._names = {m.id: m.name for m in misconceptions}
        if len(self._names) != len(misconceptions):
            raise ValueError("misconception ids must be unique in an index")

    @classmethod
    def build(cls, misconceptions: list[Misconception], embedder: Embedder, progress: bool = False,
              source: dict | None = None, index: str = "flat") -> "MisconceptionIndex":
        vectors = embedder.encode([m.name for m in misconceptions], kind="passage", progress=progress)
        return cls(list(misconceptions), build_index(vectors, index), embedder, source)

    def __len__(self) -> int:
        return len(self.misconceptions)

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Search with query vectors already encoded (evaluation encodes once and searches many times)."""
        scores, positions = search_index(self.index, vectors, k)
        return [[(self.misconceptions[p].id, float(s)) for s, p in zip(row_scores, row_positions) if p >= 0]
                for row_scores, row_positions in zip(scores, positions)]

    def search(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        """(misconception id, cosine score) per query, best first."""
        return self.search_vectors(self.embedder.encode(queries, kind="query"), k)

    def name_of(self, misconception_id: str) -> str:
        try:
            return self._names[misconception_id]
        except KeyError:
            raise KeyError(f"no misconception {misconception_id!r} in this index") from None

    def save(self, folder: Path) -> None:
        self.folder = save_folder(folder, MISCONCEPTIONS_KIND, self.embedder, self.index,
                                  [m.model_dump(mode="json") for m in self.misconceptions], self.source)

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> "MisconceptionIndex":
        """A saved index; `EmbedderMismatch` if `embedder` is not the one that built it."""
        index, records, manifest = load_folder(folder, MISCONCEPTIONS_KIND, embedder)
        loaded = cls([Misconception.model_validate(r) for r in records], index, embedder, manifest.get("source"))
        loaded.folder = Path(folder)
        return loaded
