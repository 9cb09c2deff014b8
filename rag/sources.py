"""Where few-shot examples come from: a split of any dataset, or a user's own file of solved items.

Examples need not come from the dataset being solved: a benchmark with no train split (ARC, MMLU)
can borrow solved items from another one (`codemmlu_fpt:train`), and a user can bring a file. The
agent config names the source in one string (`AgentConfig.examples`); this module reads it, checks
it before a run starts (a typo fails the run at once, not as an error on every item) and loads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mcqa.config import data_dir
from mcqa.datasets import DATASETS, Columns, load_file
from mcqa.rag.splits import DERIVED_SPLITS, load_items
from mcqa.types import Item

FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def splits_of(dataset: str) -> list[str]:
    """The splits `load_items` accepts for a dataset: its own, and the sides of train if it has one."""
    own = list(DATASETS[dataset].splits)
    return own + ([s for s in DERIVED_SPLITS if s not in own] if "train" in own else [])


@dataclass(frozen=True)
class ExampleSource:
    """A dataset split (`dataset`, `split`) or a file (`path`, read through the CLI-style `columns` pairs)."""

    dataset: str | None = None
    split: str | None = None
    path: Path | None = None
    columns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, columns: list[str] | None = None) -> ExampleSource:
        """`DATASET:SPLIT` or a path (what has a file suffix or a folder in it, as on the CLI's --dataset).

        Checks names only (known dataset, split, column mapping), never the file system."""
        text = text.strip()
        if Path(text).suffix or os.sep in text or "/" in text:
            _columns(text, columns)  # a malformed mapping fails here, with the pair named
            return cls(path=Path(text).expanduser(), columns=tuple(columns or ()))
        name, sep, split = (part.strip() for part in text.partition(":"))
        if not sep or not name or not split:
            raise ValueError(
                f"few-shot examples {text!r}: expected DATASET:SPLIT (e.g. codemmlu_fpt:train) or a "
                f"path to a file of solved items ({', '.join(FILE_SUFFIXES)})"
            )
        if name not in DATASETS:
            raise ValueError(
                f"few-shot examples {text!r}: unknown dataset {name!r}; known: {', '.join(DATASETS)} "
                f"(or give a path to a file of solved items)"
            )
        if split not in splits_of(name):
            raise ValueError(
                f"few-shot examples {text!r}: {name} has no split {split!r}; it has {', '.join(splits_of(name))}"
            )
        if columns:
            raise ValueError(
                f"few-shot examples {text!r}: a column mapping (examples_columns) is for a file of "
                f"your own, not for a dataset split"
            )
        return cls(dataset=name, split=split)

    def __str__(self) -> str:
        return f"{self.dataset}:{self.split}" if self.path is None else str(self.path)

    def check(self, root: Path | None = None) -> ExampleSource:
        """Itself, once its file is known to exist (the dataset's file, for a split); else a ValueError
        naming it. Cheap: nothing is read."""
        if self.path is not None:
            wanted = self.path
        else:
            base = self.split if self.split in DATASETS[self.dataset].splits else "train"  # fit: a side of train
            wanted = (root or data_dir()) / self.dataset / DATASETS[self.dataset].splits[base]
        if wanted.is_file():
            return self
        if self.path is None:
            raise ValueError(
                f"few-shot examples {self}: no file {wanted} (set MCQA_DATA_DIR or --data-dir to your data folder)"
            )
        wanted = wanted.resolve()
        raise ValueError(f"few-shot examples {self}: no file {wanted}; {_what_is_in(wanted.parent)}")

    def load(self, root: Path | None = None) -> list[Item]:
        """Every item of the source, labelled or not (the store keeps the labelled ones)."""
        if self.path is None:
            return load_items(self.dataset, self.split, root)
        loaded = load_file(self.path, _columns(str(self.path), list(self.columns)))
        if not loaded.items and loaded.n_skipped:
            reasons = "; ".join(f"{n} {reason}" for reason, n in loaded.skipped.most_common())
            raise ValueError(f"few-shot examples {self}: every row was skipped ({reasons})")
        return loaded.items

    def describe(self) -> dict:
        """What a store built from it records as its source (beside the items' checksum)."""
        if self.path is None:
            return {"dataset": self.dataset, "split": self.split}
        return {"file": str(self.path.resolve()), "columns": list(self.columns) or None}


def _columns(source: str, pairs: list[str] | None) -> Columns:
    """`Columns.parse` of the pairs, its error in one line naming the source and the fields there are."""
    from pydantic import ValidationError

    try:
        return Columns.parse(pairs)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    except ValueError as exc:
        problem = str(exc)
    raise ValueError(
        f"few-shot examples {source}: examples_columns {pairs}: {problem} (fields: {', '.join(Columns.model_fields)})"
    )


def _what_is_in(folder: Path) -> str:
    """The data files of the folder a missing file was looked for in, so a typo shows beside its fix."""
    if not folder.is_dir():
        return f"there is no folder {folder}"
    files = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in FILE_SUFFIXES)
    if not files:
        return f"{folder} holds no {'/'.join(FILE_SUFFIXES)} file"
    return f"{folder} holds {', '.join(files[:8])}" + (", ..." if len(files) > 8 else "")
