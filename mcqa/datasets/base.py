"""What every dataset adapter shares: reading rows with their positions, and counting skipped rows.

A loader never dies on one bad row and never drops one silently: each skip is counted under a short
reason and the first few are kept with file and row, so `mcqa data list` can say what was left out.
A bad row is one the reader cannot split into fields (a stray quote, a broken JSON line, a NUL byte,
too few or too many fields) or one the adapter cannot make an item of (choices that are no list, an
answer beyond the choices, a repeated id). A file that cannot be read at all (missing, a directory,
empty, not UTF-8, wrong columns, a quote never closed) is a `DatasetError` naming the file and, where
it helps, the line.

Cells are data, never code: a list literal is read with `ast.literal_eval`, never `eval`.
"""

from __future__ import annotations

import ast
import codecs
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcqa.types import LETTERS, Item, index_of

EXAMPLES_KEPT = 5
DATA_HINT = "set MCQA_DATA_DIR or --data-dir to your data folder"

OnSkip = Callable[..., None]  # (row number, reason, detail)

# A question may be longer than any model's context (the backend truncates it): the csv module's
# default cell limit (128 KiB) would end the whole file there, so it is raised, never lowered.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))


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


def check_file(path: Path, hint: str = "") -> None:
    """A `DatasetError` unless `path` is an existing regular file (a folder is named as a folder)."""
    if path.is_dir():
        raise DatasetError(path, "is a directory, not a file")
    if not path.exists():
        raise DatasetError(path, "file not found" + (f" ({hint})" if hint else ""))
    if not path.is_file():
        raise DatasetError(path, "not a regular file")


def read_rows(
    path: Path, required: set[str] = frozenset(), on_skip: OnSkip | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, record) from a CSV, JSON-lines or JSON-array file; row 1 is the first record.

    Checks up front that the file exists, holds text, and has the `required` columns, so a wrong file
    is one clear error rather than thousands of skipped rows. A row the reader cannot split goes to
    `on_skip(row, reason, detail)` (its number is used up, so the rows after it keep theirs); without
    `on_skip` it is a `DatasetError`.
    """
    path = Path(path)
    check_file(path, DATA_HINT)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise DatasetError(path, f"unsupported file type {suffix!r} (expected .csv, .jsonl or .json)")
    on_skip = on_skip or _fail_on_skip(path)
    try:
        _check_not_blank(path)
        if suffix == ".csv":
            yield from _csv_rows(path, required, on_skip)
        else:
            yield from _json_rows(path, required, on_skip)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path) from exc
    except OSError as exc:  # unreadable (permissions, I/O): still one line naming the file
        raise DatasetError(path, f"cannot read: {exc.strerror or exc}") from exc


def _fail_on_skip(path: Path) -> OnSkip:
    def fail(row: int, reason: str, detail: str = "") -> None:
        raise DatasetError(path, reason + (f" ({detail})" if detail else ""), row=row)

    return fail


def _check_not_blank(path: Path) -> None:
    with path.open("rb") as handle:
        chunk = handle.read(1 << 16).removeprefix(codecs.BOM_UTF8)
        while chunk:
            if chunk.strip():
                return
            chunk = handle.read(1 << 16)
    raise DatasetError(
        path,
        "empty file" if path.stat().st_size <= len(codecs.BOM_UTF8) else "only blank lines: no header and no records",
    )


def _not_utf8(path: Path) -> DatasetError:
    """Where a file stops being UTF-8: the line and byte offset of the first bad byte."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return DatasetError(path, "UTF-16 text: save the file as UTF-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return DatasetError(
            path,
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (byte offset "
            f"{exc.start}); save the file as UTF-8",
        )
    return DatasetError(path, "not UTF-8 text: save the file as UTF-8")


def _csv_rows(path: Path, required: set[str], on_skip: OnSkip) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)  # strict: a stray or unclosed quote is an error, not a guess
        try:
            header = next((fields for fields in reader if any(f.strip() for f in fields)), None)
        except csv.Error as exc:
            raise DatasetError(path, f"line {reader.line_num}: unreadable header ({exc})") from exc
        if header is None:
            raise DatasetError(path, "only blank lines: no header and no records")
        if any("\x00" in name for name in header):
            raise DatasetError(path, "NUL bytes in the header: a binary or UTF-16 file? save it as UTF-8 CSV")
        missing = required - set(header)
        if missing:
            seps = [sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]]
            hint = (
                (f" (the header is one column: is the file separated by {seps[0]!r}? mcqa reads comma-separated CSV)")
                if seps
                else ""
            )
            raise DatasetError(path, f"missing column(s) {sorted(missing)}; found {header}{hint}")
        number = 0
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "unexpected end of data" in str(exc) or "field larger than field limit" in str(exc):
                    raise DatasetError(
                        path,
                        f"line {start}: a quoted cell is never closed (unbalanced quotes): "
                        f"the rest of the file would be one cell",
                    ) from exc
                number += 1
                lines = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
                on_skip(number, "malformed CSV row", f"{lines}: {exc}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line is no row
            number += 1
            if any("\x00" in f for f in fields):
                on_skip(number, "NUL byte in a row", f"line {start}")
            elif len(fields) != len(header):
                on_skip(
                    number,
                    "wrong number of fields",
                    f"line {start}: {len(fields)} field(s), the header has {len(header)}",
                )
            else:
                yield number, dict(zip(header, fields, strict=True))


def _json_rows(path: Path, required: set[str], on_skip: OnSkip) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_bytes().decode("utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
        numbered = ((number, record, f"record {number}") for number, record in enumerate(records, start=1))
    else:  # JSON lines (also under a .json name, as AQuA ships)
        if stripped.startswith("{") and "\n" in stripped.rstrip():
            _refuse_one_object(path, text)
        numbered = _json_lines(text)
    yielded, first_problem = 0, ""
    for number, record, where in numbered:
        if isinstance(record, json.JSONDecodeError):
            first_problem = first_problem or f"{where}: invalid JSON, {record.msg}"
            on_skip(number, "invalid JSON", f"{where}: {record.msg}")
            continue
        if not isinstance(record, dict):
            first_problem = first_problem or f"{where} is {type(record).__name__}, not an object"
            on_skip(number, "record is not a JSON object", f"{where}: {type(record).__name__}")
            continue
        if not yielded:
            missing = required - set(record)
            if missing:
                raise DatasetError(path, f"missing field(s) {sorted(missing)}; found {sorted(record)}", row=number)
        yielded += 1
        yield number, record
    if not yielded and first_problem:
        raise DatasetError(
            path, f"no record is a JSON object (expected a list of objects or one object per line; {first_problem})"
        )


def _refuse_one_object(path: Path, text: str) -> None:
    """A pretty-printed file holding one object ({"data": [...]}) is not a file of records."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return  # JSON lines, some of them broken: counted line by line
    if isinstance(whole, dict):
        raise DatasetError(
            path,
            f"one JSON object (keys {sorted(whole)[:8]}), not records: expected a list of "
            f"objects or one object per line",
        )


def _json_lines(text: str) -> Iterator[tuple[int, Any, str]]:
    number = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            yield number, json.loads(line), f"line {line_no}"
        except json.JSONDecodeError as exc:
            yield number, exc, f"line {line_no}"


def build_split(
    dataset: str,
    split: str,
    path: Path,
    parse: Callable[[int, dict], Item | None],
    required: set[str] = frozenset(),
    rows: Iterator[tuple[int, dict]] | None = None,
) -> Split:
    """Run `parse` over every row; a row it cannot use is skipped with its reason, and so is a repeated id.

    Besides SkipRow and pydantic's validation errors, a KeyError (a record lacking a field), a
    TypeError or AttributeError (a field of the wrong type, say a number where a list belongs) and a
    ValueError or IndexError (a value the adapter cannot read) skip the row too: one odd record must
    not end the file.
    """
    result = Split(dataset=dataset, split=split, path=Path(path))
    first_row: dict[str, int] = {}
    for number, record in rows if rows is not None else read_rows(path, required, on_skip=result.skip):
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
        except KeyError as exc:
            result.skip(number, f"missing field {exc.args[0]!r}")
            continue
        except (TypeError, AttributeError) as exc:
            result.skip(number, "a field of the wrong type", str(exc)[:80])
            continue
        except (ValueError, IndexError) as exc:
            result.skip(number, "unreadable value", f"{type(exc).__name__}: {str(exc)[:80]}")
            continue
        if item is None:
            continue
        if item.id in first_row:
            result.skip(number, "duplicate id", f"{item.id!r}, first at row {first_row[item.id]}")
            continue
        first_row[item.id] = number
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
    return text[len(prefix) :].lstrip() if text.startswith(prefix) else text


def python_literal(text: str, reason: str) -> Any:
    """A cell holding a Python literal (a list of strings), read with `ast.literal_eval`: never `eval`,
    so code in a cell (`__import__('os').system(...)`) is a skipped row, not a command run."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        # MemoryError/RecursionError: the parser's answer to absurd nesting ("-" * 100_000 + "1")
        raise SkipRow(reason, repr(text[:40])) from exc


def choice_list(value: Any) -> list[str]:
    """The choices of a record, which must be a list (a string would split into its characters)."""
    if not isinstance(value, (list, tuple)):
        raise SkipRow("choices are not a list", type(value).__name__)
    return [str(c) for c in value]


def answer_letter(raw: Any, n_choices: int) -> str:
    """A gold letter ('c', ' C ') checked against the number of choices: 'E' of 4 is a skipped row."""
    text = str(raw).strip().upper()
    if len(text) != 1 or text not in LETTERS:
        raise SkipRow("answer is not a letter", repr(str(raw)[:20]))
    if index_of(text) >= n_choices:
        raise SkipRow("answer letter beyond the choices", f"{text} with {n_choices} choices")
    return text
