"""What every dataset adapter shares: reading rows with their positions, and counting skipped rows.

A loader never dies on one bad row and never drops one silently: each skip is counted under a short
reason and the first few are kept with file and row, so `mcqa data list` can say what was left out.
A file that cannot be read at all (missing, wrong columns) is a `DatasetError` naming the file.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcqa.types import Item

EXAMPLES_KEPT = 5


class DatasetError(ValueError):
    """A dataset file that cannot be used at all: the message names the file, the row and the problem."""

    def __init__(self, path: Path | str, problem: str, row: int | None = None):
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {problem}")
        self.path, self.row, self.problem = Path(path), row, problem


class SkipRow(Exception):
    """Raised by a row parser: this row is left out, for the reason given (a short, countable phrase)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclass
class Split:
    """The items of one split, and what was skipped on the way."""

    dataset: str
    split: str
    path: Path
    items: list[Item] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, row: int, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(f"{self.path.name} row {row}: {reason}" + (f" ({detail})" if detail else ""))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def __len__(self) -> int:
        return len(self.items)


def read_rows(path: Path, required: set[str] = frozenset()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, record) from a CSV, JSON-lines or JSON-array file; row 1 is the first record.

    Checks up front that the file exists and has the `required` columns, so a wrong file is one clear
    error rather than thousands of skipped rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found (set MCQA_DATA_DIR or --data-dir to your data folder)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_rows(path, required)
    elif suffix in (".jsonl", ".json"):
        yield from _json_rows(path, required)
    else:
        raise DatasetError(path, f"unsupported file type {suffix!r} (expected .csv, .jsonl or .json)")


def _csv_rows(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(path, f"missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        try:
            for number, record in enumerate(reader, start=1):
                yield number, record
        except csv.Error as exc:
            raise DatasetError(path, f"malformed CSV: {exc}", row=reader.line_num) from exc


def _json_rows(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"invalid JSON: {exc}") from exc
        numbered = enumerate(records, start=1)
    else:  # JSON lines (also under a .json name, as AQuA ships)
        numbered = _json_lines(path, text)
    checked = False
    for number, record in numbered:
        if not isinstance(record, dict):
            raise DatasetError(path, f"expected an object per record, got {type(record).__name__}", row=number)
        if not checked:
            missing = required - set(record)
            if missing:
                raise DatasetError(path, f"missing field(s) {sorted(missing)}; found {sorted(record)}", row=number)
            checked = True
        yield number, record


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    number = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"invalid JSON on line {line_no}: {exc.msg}", row=number) from exc


def build_split(dataset: str, split: str, path: Path, parse: Callable[[int, dict], Item | None],
                required: set[str] = frozenset(), rows: Iterator[tuple[int, dict]] | None = None) -> Split:
    """Run `parse` over every row; a SkipRow or a validation error skips that row with its reason."""
    result = Split(dataset=dataset, split=split, path=Path(path))
    for number, record in rows if rows is not None else read_rows(path, required):
        try:
            item = parse(number, record)
        except SkipRow as skip:
            result.skip(number, skip.reason, skip.detail)
            continue
        except ValidationError as exc:
            error = exc.errors()[0]
            field_name = ".".join(str(part) for part in error["loc"]) or "item"
            result.skip(number, f"invalid {field_name}", error["msg"])
            continue
        if item is not None:
            result.items.append(item)
    return result


def blank(value: Any) -> bool:
    """True for a missing cell: None, NaN, or only white space."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    return isinstance(value, str) and not value.strip()


def strip_prefix(text: str, prefix: str) -> str:
    """`text` without a leading `prefix` (the 'Question: ' that some files put before every question)."""
    return text[len(prefix):].lstrip() if text.startswith(prefix) else text

