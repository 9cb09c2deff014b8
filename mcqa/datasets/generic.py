"""Bring your own data: any CSV, JSON-lines, JSON or Parquet file, with a column mapping.

The mapping names which column holds what. `choices` is either one column holding a list (or a
Python list literal) or several columns joined by commas (`A,B,C,D`). `answer` may be a letter, a
0-based index, or the text of the correct choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mcqa.datasets.base import (
    DatasetError,
    SkipRow,
    Split,
    answer_letter,
    blank,
    build_split,
    check_file,
    choice_list,
    python_literal,
)
from mcqa.types import LETTERS, Item, letter


class Columns(BaseModel):
    """Which column holds each field; only `question` and `choices` are required in the file."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    question: str = "question"
    choices: str = "choices"
    answer: str | None = "answer"
    subject: str | None = None
    construct: str | None = None

    @classmethod
    def parse(cls, pairs: list[str] | None) -> Columns:
        """From CLI pairs like ['question=Question', 'choices=A,B,C,D']."""
        mapping = {}
        for pair in pairs or []:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"column mapping {pair!r} must look like field=column")
            mapping[key.strip()] = value.strip()
        try:
            return cls.model_validate(mapping)
        except ValidationError:
            unknown = sorted(set(mapping) - set(cls.model_fields))
            if not unknown:
                raise
            raise ValueError(
                f"unknown field(s) {unknown} in the column mapping; known: {', '.join(cls.model_fields)}"
            ) from None

    def choice_columns(self) -> list[str]:
        return [c.strip() for c in self.choices.split(",")]


def _choices(row: dict, columns: Columns) -> list[str]:
    names = columns.choice_columns()
    if len(names) > 1:
        return [str(row[n]) for n in names if not blank(row.get(n))]
    value = row.get(names[0])
    if isinstance(value, str):
        value = python_literal(value, "choices are not a list")
    return choice_list(value)


def _answer(raw, choices: list[str]) -> str | None:
    if blank(raw):
        return None
    text = str(raw).strip()
    if len(text) == 1 and text.upper() in LETTERS[: len(choices)]:
        return text.upper()
    if text.lstrip("-").isdecimal():
        position = int(text)
        if 0 <= position < len(choices):
            return letter(position)
        raise SkipRow("answer index beyond the choices", f"{text} with {len(choices)} choices")
    if text in choices:
        return letter(choices.index(text))
    if len(text) == 1 and text.isalpha():
        answer_letter(text, len(choices))  # says why: a letter beyond the choices, or no letter at all
    raise SkipRow("answer is neither a letter, an index nor a choice", repr(text[:40]))


def _parquet_rows(path: Path, required: set[str]) -> Iterator[tuple[int, dict]]:
    """Records of a Parquet file, read with pyarrow a batch at a time (no cache, no progress bars)."""
    from mcqa.extras import require

    require("pyarrow", "parquet", f"reading {path.name} (Parquet)")
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        names = reader.schema_arrow.names
    except Exception as exc:  # noqa: BLE001 - any reader failure is a file-level error
        raise DatasetError(path, f"not a readable Parquet file: {exc}") from exc
    missing = required - set(names)
    if missing:
        raise DatasetError(path, f"missing column(s) {sorted(missing)}; found {names}")
    number = 0
    try:
        for batch in reader.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except Exception as exc:  # noqa: BLE001 - a corrupt page after a good footer
        raise DatasetError(path, f"cannot read Parquet after row {number}: {exc}") from exc


def load_file(path: Path | str, columns: Columns | None = None, split: str = "file") -> Split:
    """Items from a user's file; rows that do not fit the mapping are skipped with a reason."""
    path, columns = Path(path), columns or Columns()
    required = {columns.question, *columns.choice_columns()}
    required |= {
        getattr(columns, name)
        for name in columns.model_fields_set & {"id", "answer", "subject", "construct"}
        if getattr(columns, name)
    }  # a column the user named must be there
    check_file(path)
    rows = _parquet_rows(path, required) if path.suffix.lower() == ".parquet" else None

    def parse_row(number: int, row: dict) -> Item:
        if blank(row.get(columns.question)):
            raise SkipRow("empty question")
        choices = _choices(row, columns)
        return Item(
            id=str(row[columns.id]) if columns.id else str(number),
            question=str(row[columns.question]),
            choices=choices,
            answer=_answer(row.get(columns.answer), choices) if columns.answer else None,
            subject=row.get(columns.subject) if columns.subject else None,
            construct=row.get(columns.construct) if columns.construct else None,
        )

    return build_split(path.stem, split, path, parse_row, required, rows=rows)
