"""Bring your own data: any CSV, JSON-lines, JSON or Parquet file, with a column mapping.

The mapping names which column holds what. `choices` is either one column holding a list (or a
Python list literal) or several columns joined by commas (`A,B,C,D`). `answer` may be a letter, a
0-based index, or the text of the correct choice.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mcqa.datasets.base import DatasetError, SkipRow, Split, blank, build_split, read_rows
from mcqa.types import Item, letter


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
    def parse(cls, pairs: list[str] | None) -> "Columns":
        """From CLI pairs like ['question=Question', 'choices=A,B,C,D']."""
        mapping = {}
        for pair in pairs or []:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"column mapping {pair!r} must look like field=column")
            mapping[key.strip()] = value.strip()
        return cls.model_validate(mapping)

    def choice_columns(self) -> list[str]:
        return [c.strip() for c in self.choices.split(",")]


def _choices(row: dict, columns: Columns) -> list[str]:
    names = columns.choice_columns()
    if len(names) > 1:
        return [str(row[n]) for n in names if not blank(row.get(n))]
    value = row.get(names[0])
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise SkipRow("choices are not a list", repr(value[:40])) from exc
    if not isinstance(value, (list, tuple)):
        raise SkipRow("choices are not a list", type(value).__name__)
    return [str(c) for c in value]


def _answer(raw, choices: list[str]) -> str | None:
    if blank(raw):
        return None
    text = str(raw).strip()
    if len(text) == 1 and text.isalpha():
        return text.upper()
    if text.lstrip("-").isdigit():
        position = int(text)
        if 0 <= position < len(choices):
            return letter(position)
        raise SkipRow("answer index beyond the choices", text)
    if text in choices:
        return letter(choices.index(text))
    raise SkipRow("answer is neither a letter, an index nor a choice", repr(text[:40]))


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    from datasets import Dataset  # heavy import, only for Parquet

    try:
        table = Dataset.from_parquet(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a file-level error
        raise DatasetError(path, f"cannot read Parquet: {exc}") from exc
    for number, record in enumerate(table, start=1):
        yield number, record


def load_file(path: Path | str, columns: Columns | None = None, split: str = "file") -> Split:
    """Items from a user's file; rows that do not fit the mapping are skipped with a reason."""
    path, columns = Path(path), columns or Columns()
    required = {columns.question, *columns.choice_columns()}
    if path.suffix.lower() == ".parquet":
        if not path.is_file():
            raise DatasetError(path, "file not found")
        rows = _parquet_rows(path)
    else:
        rows = read_rows(path, required)

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

    return build_split(path.stem, split, path, parse_row, rows=rows)
