"""The plain benchmarks: MMLU-STEM, ARC-Challenge, AQuA-RAT, MathQA (JSON lines, one item per row).

They carry no ids, so an item's id is its row number in the file (stable for a given file).
"""

from __future__ import annotations

import re
from pathlib import Path

from mcqa.datasets.base import SkipRow, Split, answer_letter, build_split, choice_list, python_literal, strip_prefix
from mcqa.types import Item, letter


def _gold(index, n_choices: int) -> str:
    try:
        position = int(index)
    except (TypeError, ValueError) as exc:
        raise SkipRow("answer index is not a number", repr(index)) from exc
    if not 0 <= position < n_choices:
        raise SkipRow("answer index beyond the choices", f"{position} with {n_choices} choices")
    return letter(position)


def _mmlu(number: int, row: dict) -> Item:
    choices = choice_list(row["choices"])
    return Item(
        id=str(number),
        question=row["question"],
        choices=choices,
        answer=_gold(row["answer"], len(choices)),
        subject=row.get("type"),
    )


def _arc(number: int, row: dict) -> Item:
    choices = choice_list(row["choices"])
    return Item(
        id=str(number),
        question=strip_prefix(row["query"], "Question:"),
        choices=choices,
        answer=_gold(row["gold"], len(choices)),
    )


AQUA_OPTION = re.compile(r"^\s*([A-Ea-e])\s*\)\s*(.*)$", re.DOTALL)


def _aqua(number: int, row: dict) -> Item:
    choices = []
    for position, option in enumerate(choice_list(row["options"])):
        match = AQUA_OPTION.match(option)
        if not match or match.group(1).upper() != letter(position):
            raise SkipRow("option not lettered in order", repr(option[:30]))
        choices.append(match.group(2).strip())
    return Item(
        id=str(number),
        question=row["question"],
        choices=choices,
        answer=answer_letter(row["correct"], len(choices)),
        metadata={"rationale": row.get("rationale", "")},
    )


MATHQA_OPTION = re.compile(r"([a-e])\s*\)\s*(.*?)\s*(?=,\s*[a-e]\s*\)|$)")


def parse_mathqa_options(options: str | list) -> list[str]:
    """'a ) 12 , b ) 16 , c ) 1 , 2' -> ['12', '16', '1 , 2'] (commas inside an option survive).

    Some rows hold a Python list literal of lettered options ("['a ) 462 cm ²', ...]") instead.
    """
    if isinstance(options, str) and options.lstrip().startswith("["):
        options = python_literal(options, "options list literal does not parse")
    if not isinstance(options, (str, list)):
        raise SkipRow("options are neither text nor a list", type(options).__name__)
    if isinstance(options, list):
        found = [m.groups() if (m := MATHQA_OPTION.fullmatch(str(o).strip())) else ("?", o) for o in options]
        return _in_order(found, options)
    return _in_order(MATHQA_OPTION.findall(options), options)


def _in_order(found: list[tuple[str, str]], raw) -> list[str]:
    if [key for key, _ in found] != [letter(i).lower() for i in range(len(found))]:
        raise SkipRow("options not lettered a.. in order", repr(str(raw)[:40]))
    return [value for _, value in found]


def _mathqa(number: int, row: dict) -> Item:
    choices = parse_mathqa_options(row["options"])
    return Item(
        id=str(number),
        question=row["problem"],
        choices=choices,
        answer=answer_letter(row["correct"], len(choices)),
        subject=row.get("type"),
        metadata={"rationale": row.get("rationale", "")},
    )


BENCHMARKS = {
    # name: ({split: file}, row parser, required fields, description)
    "mmlu_stem": ({"test": "test.jsonl"}, _mmlu, {"question", "choices", "answer"}, "MMLU STEM subjects, 4 choices"),
    "arc_challenge": (
        {"test": "arc_challenge.jsonl"},
        _arc,
        {"query", "choices", "gold"},
        "ARC-Challenge science, 4 choices",
    ),
    "aqua_rat": (
        {"test": "test.json", "dev": "dev.json"},
        _aqua,
        {"question", "options", "correct"},
        "AQuA-RAT algebra word problems, 5 choices",
    ),
    "mathqa": ({"test": "test.jsonl"}, _mathqa, {"problem", "options", "correct"}, "MathQA word problems, 5 choices"),
}


def load(name: str, folder: Path, split: str) -> Split:
    splits, parse, required, _ = BENCHMARKS[name]
    return build_split(name, split, folder / splits[split], parse, required)
