"""The math tool's plumbing on real AQuA-RAT and MathQA items: choices read as numbers, a result mapped to
its choice (and abstaining when it should), replies turned into programs, the footer's line read back.

MathQA's annotated formulas (`multiply(power(8, divide(1, 3)), 6)`) give a program-free check of the
mapping: their value, through `closest_choice`, should name the gold letter. They are evaluated by the
module's whitelisting `evaluate` (an `ast` walk, never eval) with MathQA's operations defined below.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache

import pytest

from mcqa.agent.compute import (
    PROGRAM_PROMPT,
    TOLERANCE,
    choice_values,
    closest_choice,
    evaluate,
    program_chat,
    program_from_reply,
    result_value,
    runnable,
)
from mcqa.datasets import data_dir, load_split
from mcqa.types import Item


@cache
def items(name: str, split: str) -> dict[str, Item]:
    return {item.id: item for item in load_split(name, split).items}


def aqua(item_id: str) -> Item:
    return items("aqua_rat", "dev")[item_id]


def mathqa(item_id: str) -> Item:
    return items("mathqa", "test")[item_id]


# -- MathQA's formulas ------------------------------------------------------------------------------


def _heron(a, b, c):
    s = (a + b + c) / 2
    return math.sqrt(s * (s - a) * (s - b) * (s - c))


MATHQA_OPERATIONS = {  # the operations used by the shared MathQA file, with MathQA's meanings
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
    "power": lambda a, b: a**b,
    "sqrt": math.sqrt,
    "log": math.log,
    "inverse": lambda a: 1 / a,
    "negate": lambda a: -a,
    "negate_prob": lambda p: 1 - p,
    "floor": math.floor,
    "factorial": lambda n: math.factorial(int(n)),
    "choose": lambda n, k: math.comb(int(n), int(k)),
    "reminder": lambda a, b: int(a) % int(b),
    "lcm": lambda a, b: math.lcm(int(a), int(b)),
    "gcd": lambda a, b: math.gcd(int(a), int(b)),
    "max": max,
    "min": min,
    "speed": lambda d, t: d / t,
    "square_area": lambda a: a * a,
    "rectangle_area": lambda a, b: a * b,
    "triangle_area": lambda b, h: b * h / 2,
    "triangle_area_three_edges": _heron,
    "quadrilateral_area": lambda d, a, b: d * (a + b) / 2,
    "circle_area": lambda r: math.pi * r * r,
    "circumface": lambda r: 2 * math.pi * r,
    "rectangle_perimeter": lambda a, b: 2 * (a + b),
    "triangle_perimeter": lambda a, b, c: a + b + c,
    "volume_cube": lambda a: a**3,
    "volume_sphere": lambda r: 4 / 3 * math.pi * r**3,
    "volume_cylinder": lambda r, h: math.pi * r * r * h,
    "volume_rectangular_prism": lambda a, b, c: a * b * c,
    "surface_cylinder": lambda r, h: 2 * math.pi * r * (r + h),
}


def formula_value(formula: str) -> float:
    """A MathQA annotated formula's value. A few rows write constants as const_4.0 or numbers as 60,000 or 09."""
    formula = re.sub(r"const_(\d+)\.0\b", r"const_\1", formula.rstrip("|"))
    formula = re.sub(r"(?<![\w.])0+(?=\d)", "", re.sub(r"(?<=\d),(?=\d\d\d\b)", "", formula))
    names = {name: float(name[6:].replace("_", ".")) for name in re.findall(r"const_\d[\d_]*", formula)}
    return evaluate(formula, MATHQA_OPERATIONS, {**names, "const_pi": math.pi})


@cache
def mathqa_formulas() -> dict[str, str]:
    """Item id -> annotated formula. The loader keeps no formula, and an item's id is its row number."""
    lines = (data_dir() / "mathqa" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return {str(number): row["annotated_formula"] for number, row in enumerate(rows, start=1)}


def test_formulas_evaluate_through_the_whitelist():
    assert formula_value(mathqa_formulas()["1"]) == pytest.approx(12)  # multiply(power(8, 1/3), 6)
    assert formula_value(mathqa_formulas()["3"]) == pytest.approx(17)  # divide(8.5, subtract(5.5, 5))
    assert formula_value("multiply(const_pi, const_0_25)") == pytest.approx(math.pi / 4)
    for hostile in (
        "__import__('os').system('true')",
        "(1).__class__",
        "[x for x in ()]",
        "lambda: 1",
        "power(10, power(10, 10))",
        "divide(1, 0)",
        "open('x')",
    ):
        with pytest.raises(ValueError):
            formula_value(hostile)


def test_mathqa_formula_values_land_on_the_gold_choice():
    """The measured figures (800 items, 797 formulas evaluate): 518 map to the gold letter within 1%, 30 to
    another letter (each checked by hand: the formula, not the parsing, is wrong), the rest abstain. The
    floors leave room for small changes; a parsing regression drops precision first."""
    outcome = {"gold": 0, "wrong": 0, "none": 0, "unevaluated": 0}
    for item_id, item in items("mathqa", "test").items():
        try:
            value = formula_value(mathqa_formulas()[item_id])
        except ValueError:
            outcome["unevaluated"] += 1
            continue
        letter, _ = closest_choice(item, value)
        outcome["none" if letter is None else "gold" if letter == item.answer else "wrong"] += 1
    assert outcome["unevaluated"] <= 5
    assert outcome["gold"] >= 500
    assert outcome["gold"] / (outcome["gold"] + outcome["wrong"]) >= 0.93


# -- choices -> numbers ---------------------------------------------------------------------------


def choice_of(item: Item, text: str) -> str:
    assert text in item.choices, (text, item.choices)  # the format is taken from the data, not made up
    return text


@pytest.mark.parametrize(
    "item_id, text, values",
    [
        ("2", "250 m", [250]),
        ("91", "Rs.8,000", [8000]),
        ("26", "22,096 pounds of water", [22096]),
        ("49", "1/25", [0.04]),
        ("35", "20 3⁄17 days", [20 + 3 / 17]),
        ("34", "4^5", [1024]),
        ("34", "4!*5!", [2880]),
        ("80", "20*pi", [20 * math.pi]),
        ("109", "5π", [5 * math.pi]),
        ("83", "13:4", [3.25]),
        ("153", "-10%", [-10]),
        ("158", "1.10x", [1.1]),
        ("31", "on the 17th day", [17]),
        ("171", "17.456 m/sec", [17.456]),
        ("168", "32000 rs.", [32000]),
        ("65", "63, 59", [63, 59]),
        ("4", "(0,3)", [0, 3]),
        ("22", "-5 and 3", [-5, 3]),
        ("22", "± 2", [2, -2]),
        ("22", "3 only.", [3]),
        ("58", "none of these", []),
        ("58", "Rafa", []),
        ("84", "8:30 AM", []),
        ("37", "5t/2", []),
        ("37", "t/25", []),
    ],
)
def test_aqua_choices(item_id, text, values):
    assert choice_values(choice_of(aqua(item_id), text)) == pytest.approx(values)


@pytest.mark.parametrize(
    "item_id, text, values",
    [
        ("2", "3 : 2", [1.5]),
        ("133", "320 cm 2", [320]),
        ("11", "462 cm ²", [462]),
        ("136", "25 √ 2", [25 * 2**0.5]),
        ("144", "48 - 8 π", [48 - 8 * math.pi]),
        ("161", "22 1 / 2 days", [22.5]),
        ("22", "21 ½ days", [21.5]),
        ("297", "rs . 27,000", [27000]),
        ("500", "− 120", [-120]),
        ("31", "- 1", [-1]),
        ("103", "30 km / hr", [30]),
        ("603", "10 ^ 2", [100]),
        ("393", "q = 200", [200]),
        ("349", "3 ⁄ 20", [0.15]),
        ("500", "it can not be determined from the information given", []),
    ],
)
def test_mathqa_choices(item_id, text, values):
    assert choice_values(choice_of(mathqa(item_id), text)) == pytest.approx(values)


@pytest.mark.parametrize(
    "text, values",
    [  # formats the prompt or a program may produce, absent from the data
        ("sqrt(3)", [3**0.5]),
        ("√3", [3**0.5]),
        ("2√3", [2 * 3**0.5]),
        ("1.2e5", [1.2e5]),
        ("1.5 × 10^3", [1500]),
        ("Rs. 1,200", [1200]),
        ("1 1/2", [1.5]),
        ("12.5%", [12.5]),
        ("3:2:1", [3, 2, 1]),
        ("2^5", [32]),
    ],
)
def test_other_formats(text, values):
    assert choice_values(text) == pytest.approx(values)


def test_most_aqua_dev_choices_state_a_number():
    """Measured: 946 of AQuA dev's 1,020 choices state a number (922 exactly one); 193 of 204 gold choices
    do, the rest are text or algebra ('Rafa', 'II & III', 't/25', 'None of these')."""
    dev = items("aqua_rat", "dev").values()
    assert sum(bool(choice_values(c)) for item in dev for c in item.choices) >= 930
    assert sum(bool(choice_values(item.choice(item.answer))) for item in dev) >= 190


# -- a result -> a letter ----------------------------------------------------------------------------


def test_exact_and_rounded_results_map_to_their_choice():
    assert closest_choice(aqua("2"), 250.0) == ("D", 0.0)  # '250 m'
    letter, error = closest_choice(aqua("2"), 251.0)
    assert letter == "D" and error == pytest.approx(0.004)
    assert closest_choice(aqua("49"), 1 / 25)[0] == "A"  # '1/25'
    assert closest_choice(aqua("91"), 10000.0)[0] == "D"  # 'Rs.10,000'
    assert closest_choice(mathqa("161"), 22.5)[0] == "B"  # '22 1 / 2 days'


def test_percentages_accept_the_number_or_the_fraction():
    assert closest_choice(aqua("36"), 15.0)[0] == "C"  # '15%'
    assert closest_choice(aqua("36"), 0.15)[0] == "C"
    assert closest_choice(aqua("153"), -0.2)[0] == "D"  # '-20%', not '20%'


def test_ratios_pairs_and_text():
    assert closest_choice(mathqa("2"), 1.5)[0] == "D"  # '3 : 2'
    assert closest_choice(mathqa("2"), [3.0, 2.0])[0] == "D"  # a returned (3, 2)
    assert closest_choice(mathqa("2"), "3:2")[0] == "D"
    assert closest_choice(aqua("65"), [63.0, 59.0])[0] == "A"  # '63, 59', not '59, 63'
    assert closest_choice(aqua("22"), [3.0, -5.0])[0] == "A"  # roots in any order: '-5 and 3'
    assert closest_choice(aqua("58"), "Rafa") == ("A", 0.0)
    assert closest_choice(aqua("84"), "8:30 am")[0] == "A"
    assert closest_choice(aqua("91"), "Rs. 10,000")[0] == "D"


def test_abstains_when_nothing_is_close_or_two_choices_tie():
    assert closest_choice(aqua("2"), 260.0) == (None, math.inf)  # 4% from '250 m'
    assert closest_choice(aqua("2"), 250 * (1 + 2 * TOLERANCE)) == (None, math.inf)
    assert closest_choice(mathqa("219"), 18000.0) == (None, math.inf)  # '18000' is choice A and choice D
    # 2*pi*2.5*62.5 = 981.75 lies between '981.41' and '982.14' (the key used pi = 22/7): too close to call
    assert closest_choice(mathqa("749"), 2 * math.pi * 2.5 * 62.5) == (None, math.inf)
    assert closest_choice(mathqa("749"), 2 * 22 / 7 * 2.5 * 62.5)[0] == "C"
    for nothing in (None, float("nan"), math.inf, "no idea", [], [1.0, 2.0, 3.0]):
        assert closest_choice(aqua("2"), nothing) == (None, math.inf)


# -- the chat, the reply, the program, its output ----------------------------------------------------


def test_program_chat_shows_the_question_and_lettered_choices():
    chat = program_chat(aqua("2"), PROGRAM_PROMPT, "system text")
    assert [m["role"] for m in chat] == ["system", "user"] and chat[0]["content"] == "system text"
    assert aqua("2").question.strip() in chat[1]["content"]
    assert "D. 250 m" in chat[1]["content"] and "def solution" in chat[1]["content"]


FENCED = """Here is the program:

```python
def solution():
    channel = 750
    return channel / 3
```

It returns the length of the ship."""

BARE = """def solution():
    x = 750 / 3
    return x

This function computes the length."""


def test_program_from_reply():
    assert program_from_reply(FENCED) == "def solution():\n    channel = 750\n    return channel / 3\n"
    assert program_from_reply(BARE) == "def solution():\n    x = 750 / 3\n    return x\n"
    assert program_from_reply("The answer is D.") is None
    assert program_from_reply("```python\nx = 250\nprint(x)\n```") is None
    unclosed = "```python\nimport math\n\ndef solution():\n    return math.sqrt(2)"  # cut off by max_tokens
    assert program_from_reply(unclosed) == "import math\n\ndef solution():\n    return math.sqrt(2)\n"
    revised = FENCED + "\n\nCorrection:\n```python\ndef solution():\n    return 250\n```"
    assert program_from_reply(revised) == "def solution():\n    return 250\n"


def test_runnable_appends_a_footer_that_prints_one_json_line():
    code = program_from_reply(FENCED)
    source = runnable(code)
    footer = 'print(_mcqa_json.dumps({"value": _mcqa_plain(solution())}), flush=True)'
    assert source.startswith(code) and source.rstrip().endswith(footer)
    compile(source, "main.py", "exec")  # compiles; it runs only in the sandbox


def test_result_value_reads_the_last_json_line():
    assert result_value('working...\n{"value": 250}\n') == 250.0
    assert result_value('{"value": 1}\n{"value": 0.75}\n') == 0.75
    assert result_value('{"value": [3.0, 2]}') == [3.0, 2.0]
    assert result_value('{"value": "Rafa"}') == "Rafa"
    assert math.isnan(result_value('{"value": NaN}'))
    assert result_value("250\n") is None and result_value("") is None and result_value('{"value": null}') is None


def test_a_program_runs_in_the_sandbox_and_names_a_letter():
    sandbox = pytest.importorskip("mcqa.sandbox")
    if sandbox.missing_toolchain("python"):
        pytest.skip("no python for the sandbox")
    reply = (
        "```python\nfrom fractions import Fraction\n\ndef solution():\n"
        "    # x / y = 60 and (x + 750) / 240 = y, so x + 750 = 4 x\n    return Fraction(750, 3)\n```"
    )
    result = sandbox.run_program(runnable(program_from_reply(reply)), "python")
    if result.status == "skipped":
        pytest.skip(f"the kernel refuses the sandbox here: {result.reason}")
    assert result.status == "ok", result.stderr
    assert closest_choice(aqua("2"), result_value(result.stdout)) == ("D", 0.0)
    failing = sandbox.run_program(runnable("def solution():\n    return 1 / 0\n"), "python")
    assert failing.status == "runtime_error" and "ZeroDivisionError" in failing.stderr
    assert result_value(failing.stdout) is None


def test_tests_and_calls_the_model_appends_are_dropped():
    """A model often appends a check function and calls at the top level; only definitions are kept."""
    reply = (
        "```python\nimport math\n\nRATE = 0.5\n\ndef solution():\n    return math.sqrt(16) * RATE\n\n"
        "def check_solution():\n    assert solution() == 3\n\ncheck_solution()\nprint(solution())\n```"
    )
    code = program_from_reply(reply)
    assert "def solution" in code and "RATE = 0.5" in code and "import math" in code
    assert "check_solution" not in code and "print(" not in code
