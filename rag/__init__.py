"""mcqa.rag: embedders, FAISS stores of solved examples and of misconceptions, hard-negative mining.

The public names are re-exported lazily: `import mcqa.rag` (which the CLI does at start-up) costs
nothing, and FAISS or sentence-transformers load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Embedder": "mcqa.rag.embedder",
    "QUERY_FORMATS": "mcqa.rag.queries",
    "DEFAULT_QUERY_FORMAT": "mcqa.rag.queries",
    "item_text": "mcqa.rag.queries",
    "labelled_pairs": "mcqa.rag.queries",
    "ExampleStore": "mcqa.rag.store",
    "MisconceptionIndex": "mcqa.rag.store",
    "LabelStore": "mcqa.rag.store",
    "StoreError": "mcqa.rag.vectors",
    "EmbedderMismatch": "mcqa.rag.vectors",
    "load_or_build_misconception_index": "mcqa.rag.cache",
    "load_or_build_example_store": "mcqa.rag.cache",
    "load_or_build_label_store": "mcqa.rag.cache",
    "train_validation": "mcqa.rag.splits",
    "load_items": "mcqa.rag.splits",
    "training_pairs": "mcqa.rag.mining",
    "mine": "mcqa.rag.mining",
    "score_format": "mcqa.rag.retrieval",
    "search_fused": "mcqa.rag.retrieval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mcqa.rag' has no attribute {name!r}")
