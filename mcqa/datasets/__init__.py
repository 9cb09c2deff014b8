"""Dataset adapters: every benchmark folder in the data directory becomes a list of `Item`s.

`load_split("eedi", "train")` is the one entry point; a path to a file of your own goes through
the generic adapter (`mcqa.datasets.generic.load_file`) with a column mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcqa.config import data_dir
from mcqa.datasets import benchmarks, codemmlu, eedi
from mcqa.datasets import map as map_
from mcqa.datasets.base import DatasetError, Split
from mcqa.datasets.generic import Columns, load_file
from mcqa.types import Misconception


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    splits: dict[str, str]
    loader: Callable[[Path, str], Split]
    catalogue: Callable[[Path], list[Misconception]] | None = None
    holdout: str = "question"  # what `fit`/`validation` hold out (mcqa.rag.splits): question, or row


def _benchmark(name: str) -> DatasetSpec:
    splits, _, _, description = benchmarks.BENCHMARKS[name]
    return DatasetSpec(name, description, splits, lambda folder, split: benchmarks.load(name, folder, split))


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            eedi.NAME,
            "Eedi maths diagnostics: 4 choices, a misconception per distractor (MAP@25)",
            eedi.SPLITS,
            eedi.load,
            eedi.load_misconceptions,
        ),
        DatasetSpec(
            map_.NAME,
            "MAP student responses: chosen answer, explanation, Category:Misconception (MAP@3)",
            map_.SPLITS,
            map_.load,
            map_.load_misconceptions,
            holdout="row",
        ),
        DatasetSpec(
            codemmlu.NAME, "CodeMMLU programming MCQ, FPT Kaggle version (messy labels)", codemmlu.SPLITS, codemmlu.load
        ),
        *(_benchmark(name) for name in benchmarks.BENCHMARKS),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(name, f"unknown dataset; known: {', '.join(DATASETS)} (or pass a file path)") from None


def load_split(name: str, split: str, root: Path | None = None) -> Split:
    """The items of `split` of dataset `name`, read from `root` (default: the data directory setting)."""
    spec = get_spec(name)
    if split not in spec.splits:
        raise DatasetError(name, f"unknown split {split!r}; {name} has {', '.join(spec.splits)}")
    return spec.loader((root or data_dir()) / name, split)


def load_misconceptions(name: str, root: Path | None = None) -> list[Misconception]:
    """The misconception catalogue of `name` (eedi, map)."""
    spec = get_spec(name)
    if spec.catalogue is None:
        raise DatasetError(name, "this dataset has no misconception catalogue (eedi and map do)")
    return spec.catalogue((root or data_dir()) / name)


__all__ = [
    "DATASETS",
    "Columns",
    "DatasetError",
    "DatasetSpec",
    "Split",
    "get_spec",
    "load_file",
    "load_misconceptions",
    "load_split",
]
