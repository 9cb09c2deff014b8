"""Malformed input, generated here (no broken file is committed), through the real `mcqa` commands.

Every kind of bad file goes through the generic adapter (a file of one's own with a column mapping)
and through each dataset adapter (a data folder laid out like the shared one, holding a broken file
in place of the real one). Each ends one of two ways, never with a traceback and never with a cell
run as code:

- a counted skip: `mcqa data show` exits 0 and says on one line how many rows were skipped and why;
- a clean error: `mcqa data show` and `mcqa eval run` exit 2 with one line naming the file, and
  `eval run` stops before any model loads (its run folder is never made).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.datasets import Columns, load_file

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
DIR, MISSING = "<a directory>", "<no file>"
MARKER = "PWNED"  # what a cell's code would create in the test's folder if anything evaluated it
LONG = "How many? " + "a very long question " * 10_000  # 210,000 characters: past the csv module's default cell limit


@dataclass
class Error:
    """Exit 2 with one line naming the file and saying each of `says`."""

    says: list[str]


@dataclass
class Skip:
    """Exit 0 with one line on stderr counting `n` rows skipped under `reason` (and saying `says`)."""

    reason: str
    n: int = 1
    says: list[str] = field(default_factory=list)


@dataclass
class Loads:
    """Exit 0, nothing skipped, nothing on stderr."""


def code(marker: Path) -> str:
    """A Python expression that creates `marker`: it must stay text."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def garbage(n: int = 4096) -> bytes:
    """Binary noise (a PNG signature, then seeded random bytes): neither text nor UTF-8."""
    rng = random.Random(16)
    return b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(n))


def high_bytes(n: int = 64) -> bytes:
    """Random bytes above 0x7f (no newline among them): what a mangled download leaves in a text file."""
    rng = random.Random(16)
    return bytes(rng.randrange(128, 256) for _ in range(n))


def csv_text(records: list[dict], delimiter: str = ",") -> str:
    handle = io.StringIO()
    writer = csv.DictWriter(handle, list(records[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return handle.getvalue()


def jsonl_text(records: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# --- the dataset adapters: a good record of each, and how a record goes wrong ------------------------


@dataclass
class Adapter:
    name: str
    split: str
    file: str
    good: Callable[[int], dict]
    question: str  # the field holding the question (dropped for "missing columns")
    bad_answer: tuple[str, object, str] | None = None  # field, value, reason
    bad_choices: tuple[str, object, str] | None = None
    code_choices: tuple[str, Callable[[str], object], str] | None = None
    forty: tuple[str, Callable[[list[str]], object], str] | None = None
    id_field: str | None = None
    other: dict[str, tuple[dict, object]] = field(default_factory=dict)  # kind -> (change to a record, expected)

    @property
    def is_csv(self) -> bool:
        return self.file.endswith(".csv")

    def render(self, records: list[dict]) -> bytes:
        return (csv_text(records) if self.is_csv else jsonl_text(records)).encode()

    def records(self, bad: dict | None = None) -> list[dict]:
        """Three good records, with `bad` (a record) as the second when given."""
        rows = [self.good(i) for i in range(1, 4)]
        return rows[:1] + [bad] + rows[1:] if bad is not None else rows


def _eedi(i: int) -> dict:
    return {
        "QuestionId": str(i),
        "ConstructId": "1",
        "ConstructName": "Add",
        "SubjectId": "2",
        "SubjectName": "Sums",
        "CorrectAnswer": "B",
        "QuestionText": f"What is {i} + 1?",
        "AnswerAText": str(i),
        "AnswerBText": str(i + 1),
        "AnswerCText": str(i + 2),
        "AnswerDText": str(i + 3),
        "MisconceptionAId": "7.0",
        "MisconceptionBId": "",
        "MisconceptionCId": "",
        "MisconceptionDId": "",
    }


def _map(i: int) -> dict:
    right = i % 2 == 0
    return {
        "row_id": str(i),
        "QuestionId": "31772",
        "QuestionText": "What is 2 + 2?",
        "MC_Answer": "4" if right else "5",
        "StudentExplanation": "I added them",
        "Category": "True_Correct" if right else "False_Misconception",
        "Misconception": "NA" if right else "Adding_on",
    }


def _codemmlu(i: int) -> dict:
    return {
        "task_id": f"k{i}",
        "question": f"Question: What does print({i}) print?",
        "choices": str([str(i), str(i + 1), "nothing", "error"]),
        "answer": "A",
    }


def _mmlu(i: int) -> dict:
    return {"question": f"What is {i} + 1?", "type": "math", "choices": [str(i), str(i + 1), "0", "9"], "answer": 1}


def _arc(i: int) -> dict:
    return {"query": f"Question: What is {i} + 1?", "choices": [str(i), str(i + 1), "0", "9"], "gold": 1}


def _aqua(i: int) -> dict:
    return {
        "question": f"What is {i} + 1?",
        "options": [f"A){i}", f"B){i + 1}", "C)0", "D)9", "E)7"],
        "rationale": "add one",
        "correct": "B",
    }


def _mathqa(i: int) -> dict:
    return {
        "problem": f"what is {i} + 1 ?",
        "rationale": "add one",
        "options": f"a ) {i} , b ) {i + 1} , c ) 0 , d ) 9 , e ) 7",
        "correct": "b",
        "type": "general",
    }


FORTY = [f"option {n}" for n in range(40)]

ADAPTERS = [
    Adapter(
        "eedi",
        "train",
        "train.csv",
        _eedi,
        "QuestionText",
        id_field="QuestionId",
        bad_answer=("CorrectAnswer", "E", "answer letter beyond the choices"),
    ),
    Adapter(
        "map",
        "train",
        "train.csv",
        _map,
        "QuestionText",
        id_field="row_id",
        other={"no answer picked": ({"MC_Answer": " "}, Skip("empty MC_Answer"))},
    ),
    Adapter(
        "codemmlu_fpt",
        "train",
        "b6_train_data.csv",
        _codemmlu,
        "question",
        id_field="task_id",
        bad_answer=("answer", "E", "answer letter beyond the choices"),
        bad_choices=("choices", "hello", "choices are not a Python list literal"),
        code_choices=("choices", lambda c: f"[{c}]", "choices are not a Python list literal"),
        forty=("choices", str, "invalid choices"),
    ),
    Adapter(
        "mmlu_stem",
        "test",
        "test.jsonl",
        _mmlu,
        "question",
        bad_answer=("answer", 7, "answer index beyond the choices"),
        bad_choices=("choices", "abcd", "choices are not a list"),
        forty=("choices", list, "invalid choices"),
    ),
    Adapter(
        "arc_challenge",
        "test",
        "arc_challenge.jsonl",
        _arc,
        "query",
        bad_answer=("gold", 7, "answer index beyond the choices"),
        bad_choices=("choices", 5, "choices are not a list"),
        forty=("choices", list, "invalid choices"),
    ),
    Adapter(
        "aqua_rat",
        "test",
        "test.json",
        _aqua,
        "question",
        bad_answer=("correct", "F", "answer letter beyond the choices"),
        bad_choices=("options", "A)1 B)2", "choices are not a list"),
        forty=(
            "options",
            lambda texts: [f"{chr(65 + n % 26)}){t}" for n, t in enumerate(texts)],
            "option not lettered in order",
        ),
    ),
    Adapter(
        "mathqa",
        "test",
        "test.jsonl",
        _mathqa,
        "problem",
        bad_answer=("correct", "f", "answer letter beyond the choices"),
        bad_choices=("options", 5, "options are neither text nor a list"),
        code_choices=("options", lambda c: f"[{c}]", "options list literal does not parse"),
    ),
]


def file_kinds(a: Adapter, tmp: Path) -> dict[str, tuple[object, object]]:
    """Kind -> (what to put at the file's place, what must happen), for one adapter's file."""
    good = a.render(a.records())
    first, rest = good.split(b"\n", 2)[:2], good.split(b"\n", 2)[2]
    head = b"\n".join(first) + b"\n"  # header and first row (CSV) or first two records (JSON lines)
    without_question = [{k: v for k, v in r.items() if k != a.question} for r in a.records()]
    kinds = {
        "empty file": (b"", Error(["empty file"])),
        "only blank lines": (b"\n\n   \n\n", Error(["only blank lines"])),
        "missing columns": (
            a.render(without_question),
            Error([f"missing {'column' if a.is_csv else 'field'}(s)", repr(a.question)]),
        ),
        "latin-1 bytes": (
            head + "Qu'est-ce qu'un caf\u00e9 ?\n".encode("latin-1") + rest,
            Error(["not UTF-8", "byte 0xe9 at line 3", "byte offset"]),
        ),
        "random bytes in a UTF-8 file": (head + high_bytes() + b"\n" + rest, Error(["not UTF-8", "at line 3"])),
        "binary garbage": (garbage(), Error(["not UTF-8", "byte 0x89 at line 1 (byte offset 0)"])),
        "UTF-16": (good.decode().encode("utf-16"), Error(["UTF-16"])),
        "a directory": (DIR, Error(["is a directory, not a file"])),
        "a missing file": (MISSING, Error(["file not found", "--data-dir"])),
        "long question": (a.render(a.records({**a.good(9), a.question: LONG})), Loads()),
    }
    if a.is_csv:
        header = good.split(b"\n", 1)[0]
        row = a.render([a.good(9)]).split(b"\n")[1]
        kinds |= {
            "header only": (header + b"\n", Error(["no records"])),
            "quote never closed": (
                good + b'"never closed, to the end of the file\n',
                Error(["line 5", "never closed (unbalanced quotes)"]),
            ),
            "stray quote": (
                head + b'"stray" quote,' + row.split(b",", 1)[1] + b"\n" + rest,
                Skip("malformed CSV row", says=["line 3"]),
            ),
            "semicolon delimiter": (
                csv_text(a.records(), ";").encode(),
                Error(["missing column(s)", "separated by ';'"]),
            ),
            "tab delimiter": (csv_text(a.records(), "\t").encode(), Error(["missing column(s)", "separated by '\\t'"])),
            "NUL bytes": (
                head + row.replace(b",", b"\x00,", 1) + b"\n" + rest,
                Skip("NUL byte in a row", says=["line 3"]),
            ),
            "NUL bytes in the header": (good.decode().encode("utf-16-le"), Error(["NUL bytes in the header"])),
            "too few fields": (head + b"lonely\n" + rest, Skip("wrong number of fields", says=["line 3: 1 field(s)"])),
        }
    else:
        kinds |= {
            "header only": (b"[]", Error(["no records"])),
            "broken JSON line": (head + b'{"question": "cut off' + b"\n" + rest, Skip("invalid JSON", says=["line 3"])),
            "a line that is no object": (head + b"[1, 2, 3]\n" + rest, Skip("record is not a JSON object")),
            "NUL bytes": (
                head + json.dumps(a.good(9)).replace(": ", ":\x00 ", 1).encode() + b"\n" + rest,
                Skip("invalid JSON"),
            ),
            "an object instead of a list": (
                json.dumps({"data": a.records()}, indent=2).encode(),
                Error(["one JSON object", "not records"]),
            ),
            "a list of numbers": (b"[1, 2, 3]", Error(["no record is a JSON object", "record 1 is int"])),
            "JSON array cut off": (json.dumps(a.records()).encode()[:-20], Error(["invalid JSON at line 1"])),
        }
    rows = {}
    if a.bad_answer:
        key, value, reason = a.bad_answer
        rows["answer out of range"] = ({key: value}, Skip(reason))
    if a.bad_choices:
        key, value, reason = a.bad_choices
        rows["choices not a list"] = ({key: value}, Skip(reason))
    if a.code_choices:
        key, wrap, reason = a.code_choices
        rows["code in a choices cell"] = ({key: wrap(code(tmp / MARKER))}, Skip(reason))
    if a.forty:
        key, shape, reason = a.forty
        says = ["at most 26 choices, got 40"] if reason == "invalid choices" else []
        rows["40 choices"] = ({key: shape(FORTY)}, Skip(reason, says=says))
    if a.id_field:
        rows["duplicate ids"] = ({a.id_field: a.good(1)[a.id_field]}, Skip("duplicate id", says=["first at row 1"]))
    if a.name == "eedi":  # its choices are plain text cells: code there is a choice's text, never run
        rows["code in a text cell"] = ({"AnswerCText": code(tmp / MARKER)}, Loads())
    rows |= a.other
    for kind, (change, expect) in rows.items():
        kinds[kind] = (a.render(a.records({**a.good(9), **change})), expect)
    return kinds


ADAPTER_CASES = [(a, kind) for a in ADAPTERS for kind in file_kinds(a, Path("/x"))]


# --- the generic adapter: a file of one's own, with a column mapping --------------------------------

MAPPING = ["-c", "id=qid", "-c", "question=Question", "-c", "choices=Options", "-c", "answer=Gold"]


def _row(i: int, as_json: bool = False, **change) -> dict:
    options = [f"{i}", f"{i + 1}", "0", "9"]
    return {
        "qid": f"q{i}",
        "Question": f"What is {i} + 1?",
        "Options": options if as_json else str(options),
        "Gold": "B",
        **change,
    }


def _mine_csv(bad: dict | None = None, **kw) -> bytes:
    rows = [_row(1), _row(2), _row(3)]
    return csv_text(rows[:1] + [{**_row(9), **bad}] + rows[1:] if bad is not None else rows, **kw).encode()


def _mine_jsonl(*middle: str) -> bytes:
    lines = [json.dumps(_row(i, as_json=True)) for i in (1, 2, 3)]
    return ("\n".join(lines[:1] + list(middle) + lines[1:]) + "\n").encode()


def _parquet(path: Path, records: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)


def own_file_kinds(tmp: Path) -> dict[str, tuple[str, object, object, list[str]]]:
    """Kind -> (file name, content, what must happen, extra CLI arguments)."""
    good = _mine_csv()
    head, rest = b"\n".join(good.split(b"\n", 2)[:2]) + b"\n", good.split(b"\n", 2)[2]
    row9 = _mine_csv().split(b"\n")[1].replace(b"q1", b"q9")
    return {
        "empty file": ("mine.csv", b"", Error(["empty file"]), []),
        "empty JSON lines file": ("mine.jsonl", b"", Error(["empty file"]), []),
        "only blank lines": ("mine.csv", b"\n\n  \n", Error(["only blank lines"]), []),
        "only blank JSON lines": ("mine.jsonl", b"\n\n  \n", Error(["only blank lines"]), []),
        "header only": ("mine.csv", b"qid,Question,Options,Gold\n", Error(["no records"]), []),
        "an empty JSON list": ("mine.json", b"[]", Error(["no records"]), []),
        "missing columns": (
            "mine.csv",
            b"qid,Question,Gold\nq1,What?,A\n",
            Error(["missing column(s) ['Options']"]),
            [],
        ),
        "a mapped column missing": (
            "mine.csv",
            good.replace(b"Gold", b"Answer"),
            Error(["missing column(s) ['Gold']"]),
            [],
        ),
        "missing JSON fields": (
            "mine.jsonl",
            b'{"Question": "q"}\n',
            Error(["missing field(s) ['Gold', 'Options', 'qid']"]),
            [],
        ),
        "latin-1 bytes": (
            "mine.csv",
            head + "q9,caf\u00e9?,\"['a', 'b']\",A\n".encode("latin-1") + rest,
            Error(["not UTF-8", "byte 0xe9 at line 3", "byte offset"]),
            [],
        ),
        "random bytes in a UTF-8 CSV": (
            "mine.csv",
            head + high_bytes() + b"\n" + rest,
            Error(["not UTF-8", "line 3"]),
            [],
        ),
        "binary garbage as CSV": ("mine.csv", garbage(), Error(["not UTF-8", "line 1 (byte offset 0)"]), []),
        "binary garbage as JSON lines": ("mine.jsonl", garbage(), Error(["not UTF-8"]), []),
        "UTF-16": ("mine.csv", good.decode().encode("utf-16"), Error(["UTF-16"]), []),
        "NUL bytes in the header (UTF-16 without BOM)": (
            "mine.csv",
            good.decode().encode("utf-16-le"),
            Error(["NUL bytes in the header"]),
            [],
        ),
        "quote never closed": ("mine.csv", good + b'"q9,never closed\n', Error(["line 5", "never closed"]), []),
        "stray quote": (
            "mine.csv",
            head + b'"q9" x,' + row9.split(b",", 1)[1] + b"\n" + rest,
            Skip("malformed CSV row", says=["line 3"]),
            [],
        ),
        "semicolon delimiter": ("mine.csv", _mine_csv(delimiter=";"), Error(["separated by ';'"]), []),
        "tab delimiter": ("mine.csv", _mine_csv(delimiter="\t"), Error(["separated by '\\t'"]), []),
        "NUL bytes": (
            "mine.csv",
            head + row9.replace(b"What", b"Wh\x00at") + b"\n" + rest,
            Skip("NUL byte in a row", says=["line 3"]),
            [],
        ),
        "too many fields": ("mine.csv", head + row9 + b",extra\n" + rest, Skip("wrong number of fields"), []),
        "broken JSON line": ("mine.jsonl", _mine_jsonl('{"Question": "cut'), Skip("invalid JSON", says=["line 2"]), []),
        "a JSON line that is no object": ("mine.jsonl", _mine_jsonl("[1, 2]"), Skip("record is not a JSON object"), []),
        "a JSON object instead of a list": (
            "mine.json",
            json.dumps({"data": [_row(1, True)]}, indent=1).encode(),
            Error(["one JSON object", "['data']"]),
            [],
        ),
        "a JSON list of numbers": ("mine.json", b"[1, 2, 3]", Error(["no record is a JSON object"]), []),
        "a JSON array cut off": (
            "mine.json",
            json.dumps([_row(1, True)]).encode()[:-5],
            Error(["invalid JSON at line 1"]),
            [],
        ),
        "corrupt Parquet": (
            "mine.parquet",
            b"PAR1" + garbage(512) + b"PAR1",
            Error(["not a readable Parquet file"]),
            [],
        ),
        "Parquet without the mapped columns": ("mine.parquet", "parquet:wrong", Error(["missing column(s)"]), []),
        "a directory": ("mine.csv", DIR, Error(["is a directory, not a file"]), []),
        "a missing file": ("mine.csv", MISSING, Error(["file not found"]), []),
        "an unsupported file type": ("mine.txt", good, Error(["unsupported file type '.txt'"]), []),
        "choices not a list": ("mine.csv", _mine_csv({"Options": "a or b"}), Skip("choices are not a list"), []),
        "choices of the wrong type": (
            "mine.jsonl",
            _mine_jsonl(json.dumps({**_row(9, True), "Options": 5})),
            Skip("choices are not a list", says=["int"]),
            [],
        ),
        "code in a choices cell": (
            "mine.csv",
            _mine_csv({"Options": code(tmp / MARKER)}),
            Skip("choices are not a list"),
            [],
        ),
        "code in a list literal": (
            "mine.csv",
            _mine_csv({"Options": f"[{code(tmp / MARKER)}, 'b']"}),
            Skip("choices are not a list"),
            [],
        ),
        "a literal nested past the parser": (
            "mine.csv",
            _mine_csv({"Options": "-" * 100_000 + "1"}),
            Skip("choices are not a list"),
            [],
        ),
        "answer letter out of range": (
            "mine.csv",
            _mine_csv({"Gold": "E"}),
            Skip("answer letter beyond the choices", says=["E with 4 choices"]),
            [],
        ),
        "answer index out of range": (
            "mine.csv",
            _mine_csv({"Gold": "7"}),
            Skip("answer index beyond the choices", says=["7 with 4 choices"]),
            [],
        ),
        "duplicate ids": (
            "mine.csv",
            _mine_csv({"qid": "q1"}),
            Skip("duplicate id", says=["'q1', first at row 1"]),
            [],
        ),
        "40 choices": ("mine.csv", _mine_csv({"Options": str(FORTY)}), Skip("invalid choices", says=["got 40"]), []),
        "long question": ("mine.csv", _mine_csv({"Question": LONG}), Loads(), []),
        "markup in a column name": (
            "mine.csv",
            b"[/]qid,[bold]Question\nq1,What?\n",
            Error(["['[/]qid', '[bold]Question']"]),
            [],
        ),
        "an unknown field in the mapping": (
            "mine.csv",
            good,
            Error(["unknown field(s) ['colour'] in the column mapping"]),
            ["-c", "colour=Gold"],
        ),
    }


OWN_KINDS = list(own_file_kinds(Path("/x")))


# --- running the commands and checking how they end ----------------------------------------------------


def place(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is DIR:
        path.mkdir()
    elif content == "parquet:wrong":
        _parquet(path, [{"text": "q", "options": ["a", "b"]}])
    elif content is not MISSING:
        path.write_bytes(content)


def check(args: list[str], expect, path: Path, tmp: Path, names_file: bool = True) -> None:
    """Run `mcqa data show ARGS`, and `mcqa eval run` for an error, and check how each ended."""
    show = runner.invoke(app, ["data", "show", *args])
    assert "Traceback" not in show.output
    assert not (tmp / MARKER).exists(), "a cell was run as code"
    if isinstance(expect, Error):
        _check_error(show, expect, path, names_file)
        out = tmp / "run"
        run = runner.invoke(app, ["eval", "run", "--dataset", *args, "--out", str(out)])
        _check_error(run, expect, path, names_file)
        assert not out.exists(), "eval run went past loading the data"
        return
    assert show.exit_code == 0, show.output
    assert show.exception is None
    lines = show.stderr.splitlines()
    if isinstance(expect, Loads):
        assert lines == [], show.stderr
        return
    assert len(lines) == 1, show.stderr
    assert lines[0].startswith(f"skipped {expect.n} row(s) of {path}: {expect.n} {expect.reason}"), lines[0]
    for text in expect.says:
        assert text in lines[0], lines[0]


def _check_error(result, expect: Error, path: Path, names_file: bool) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # typer's exit, not an escaped exception
    assert "Traceback" not in result.output
    line = result.stderr.rstrip("\n")
    assert "\n" not in line, f"not one line:\n{result.stderr}"
    assert line.startswith("error: "), line
    if names_file:
        assert str(path) in line, line
    for text in expect.says:
        assert text in line, line


@pytest.mark.parametrize("adapter,kind", ADAPTER_CASES, ids=[f"{a.name}-{kind}" for a, kind in ADAPTER_CASES])
def test_a_dataset_folder_with_a_broken_file(tmp_path, adapter, kind):
    content, expect = file_kinds(adapter, tmp_path)[kind]
    root = tmp_path / "data"
    path = root / adapter.name / adapter.file
    place(path, content)
    check([adapter.name, "--split", adapter.split, "--data-dir", str(root)], expect, path, tmp_path)


@pytest.mark.parametrize("kind", OWN_KINDS)
def test_a_file_of_ones_own(tmp_path, kind):
    name, content, expect, extra = own_file_kinds(tmp_path)[kind]
    path = tmp_path / name
    place(path, content)
    check([str(path), *MAPPING, *extra], expect, path, tmp_path, names_file=kind != "an unknown field in the mapping")


def test_there_are_at_least_twenty_kinds():
    assert len(set(OWN_KINDS)) >= 20
    assert all(len(file_kinds(a, Path("/x"))) >= 20 for a in ADAPTERS)


def test_a_long_question_loads_whole(tmp_path):
    """The adapter keeps the text; cutting it to the model's context is the backend's work."""
    path = tmp_path / "mine.csv"
    path.write_bytes(_mine_csv({"Question": LONG}))
    loaded = load_file(path, Columns.parse(MAPPING[1::2]))
    short = len(_row(1)["Question"])
    assert [len(it.question) for it in loaded.items] == [short, len(LONG), short, short]


def test_the_line_of_a_broken_json_line_is_kept(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_bytes(_mine_jsonl('{"Question": "cut', "", "[1]"))
    loaded = load_file(path, Columns.parse(MAPPING[1::2]))
    assert [it.id for it in loaded.items] == ["q1", "q2", "q3"]
    assert loaded.examples == [
        "mine.jsonl row 2: invalid JSON (line 2: Unterminated string starting at)",
        "mine.jsonl row 3: record is not a JSON object (line 4: list)",
    ]


def test_no_adapter_can_evaluate_a_cell():
    """Statically: no dataset adapter calls eval, exec or compile; list literals go through ast.literal_eval."""
    literal_evals = 0
    for source in sorted((REPO / "mcqa" / "datasets").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None)  # a builtin called by its bare name
                assert name not in {"eval", "exec", "compile", "__import__"}, (
                    f"{source.name}:{node.lineno} calls {name}"
                )
                literal_evals += getattr(node.func, "attr", None) == "literal_eval"
    assert literal_evals >= 1


@pytest.mark.parametrize("command", [["data", "show"], ["eval", "run", "--out", "RUN", "--dataset"]])
def test_the_real_command_prints_one_line_and_no_traceback(tmp_path, command):
    """As a user runs it (a process of its own, a terminal's worth of width), not through CliRunner."""
    path = tmp_path / "a folder of things that is rather long to name" / "mine.csv"
    path.parent.mkdir()
    path.write_bytes(b"qid,Question,Options,Gold\n" + "q1,caf\u00e9?,\"['a', 'b']\",A\n".encode("latin-1"))
    args = [a.replace("RUN", str(tmp_path / "run")) for a in command]
    done = subprocess.run(
        [sys.executable, "-c", "from mcqa.cli import app; app(prog_name='mcqa')", *args, str(path), *MAPPING],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "60"},
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.count("\n") == 1 and str(path) in done.stderr and "line 2" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()
