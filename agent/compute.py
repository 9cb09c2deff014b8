"""The agent's math tool (program-aided answering): the model writes `solution()`, the sandbox runs it,
and its result is mapped to the nearest choice.

Why a program: a small coder model computes badly in prose but writes short arithmetic well, and the
number a program prints is evidence independent of the model's letter. The pieces, in the order the
graph node uses them:

    program_chat(item) -> LLM reply -> program_from_reply -> runnable -> mcqa.sandbox.run_program
    -> result_value(stdout) -> closest_choice(item, value) -> (letter | None, relative error)

Nothing here executes model code: `runnable` only builds the source the sandbox runs, and the small
expression evaluator below walks an `ast` over a whitelist (numbers, + - * / **, named constants and
functions), never eval/exec. It reads the choices ('Rs. 1,200', '3 : 2', '2√3', '4!*5!') and, in the
tests, MathQA's annotated formulas.

The tolerance (1% relative) was set on MathQA's annotated formulas (tests/test_agent_compute.py): of 797
formulas that evaluate, 518 land within 1% of the gold choice and 30 of another one (hand-checked: wrong
formulas, not misread choices); the other 249 are far from every choice (formula noise) and abstain.
0.5% loses 5 gold hits; 2% gains 7 for 4 more wrong. On AQuA dev 21 of 204 items have two choices
within 1% of each other, so the nearest choice, not merely a close one, is what is returned.
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import operator
import re
import textwrap
from collections.abc import Callable, Mapping

from mcqa.llm.base import Chat
from mcqa.prompts import format_choices
from mcqa.types import Item

TOLERANCE = 0.01  # relative error (absolute when the choice is 0) within which a result names a choice

PROGRAM_SYSTEM = "You are an expert Python programmer who solves math word problems by writing short programs."
PROGRAM_PROMPT = (
    "Write a Python function `solution()` that computes the answer to this math problem.\n\n"
    "Problem: {question}\n\n"
    "Answer choices:\n{choices}\n\n"
    "Reply with only a ```python code block defining `def solution():`. Compute the answer step by step "
    "from the numbers in the problem, with short variable names and no comments, and return it as a number "
    "(int or float; a percentage as the number before the % sign, a ratio a : b as a / b). Use only the "
    "math module. No print(), no input(), no tests."
)


def program_chat(item: Item, template: str = PROGRAM_PROMPT, system: str = PROGRAM_SYSTEM) -> Chat:
    """The chat asking for `def solution():`; the choices are shown (lettered) as hints, because a
    program whose result must land on one of them is checkable, and units/scale are then unambiguous."""
    user = template.format(question=item.question.strip(), choices=format_choices(item))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- the model's reply -> a program -------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_CODE_START = re.compile(r"^(?:import\s|from\s+\w[\w.]*\s+import\s|def\s|@|class\s)")


def program_from_reply(text: str) -> str | None:
    """The code that defines `solution`: the last fenced block that does (a model that revises its code
    writes the revision last; an unclosed fence, cut by max_tokens, runs to the end), else the bare code
    from its first import/def line, with trailing prose dropped until it parses; then only its
    definitions (`definitions_only`). None without `def solution`."""
    code = _program_in(text)
    return None if code is None else definitions_only(code)


def _program_in(text: str) -> str | None:
    blocks = [block for block in _FENCE.findall(text) if re.search(r"def\s+solution\s*\(", block)]
    if blocks:
        return textwrap.dedent(blocks[-1]).strip() + "\n"
    if not re.search(r"def\s+solution\s*\(", text):
        return None
    lines = text.replace("```", "").splitlines()
    start = next((k for k, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    code = lines[start:]
    for end in range(len(code), 0, -1):  # drop trailing prose ("This function returns ...")
        candidate = "\n".join(code[:end])
        if "def solution" in candidate and _parses(candidate):
            return candidate.strip() + "\n"
    return "\n".join(code).strip() + "\n"  # let the sandbox report the syntax error


def _parses(code: str) -> bool:
    try:
        ast.parse(code)  # parsing only: nothing of the model's code runs here
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


# The footer turns whatever solution() returns into one JSON line. The sandbox runs `python -I -S`
# (no site-packages), but a program may still return numpy/sympy-like objects where they exist: anything
# with __float__ becomes a float, containers become lists, the rest its str().
_FOOTER = """

def _mcqa_plain(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        value = list(value.values())
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mcqa_plain(v) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        pass
    if getattr(value, "imag", None) == 0:
        return float(value.real)
    return str(value)


import json as _mcqa_json
print(_mcqa_json.dumps({"value": _mcqa_plain(solution())}), flush=True)
"""


def definitions_only(code: str) -> str:
    """The imports, definitions and constant assignments of the model's code: a model often appends tests,
    asserts or example calls at the top level, which would fail or print before `solution()` is called.
    Done by parsing (nothing runs here); code that does not parse is returned as it is, for the sandbox to
    report its syntax error."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    body = [
        node
        for node in tree.body
        if isinstance(node, kept)
        and not (isinstance(node, ast.FunctionDef) and node.name.startswith(("test", "check")))
    ]
    if len(body) == len(tree.body):
        return code
    lines = code.splitlines()
    spans = [
        (min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]), node.end_lineno) for node in body
    ]
    return "\n".join("\n".join(lines[first - 1 : last]) for first, last in spans) + "\n"


def runnable(code: str) -> str:
    """`code` plus a footer that calls solution() and prints `{"value": float|str|list|null}` as the last
    line (Fraction, Decimal, numpy and sympy numbers via float(); tuples and sets as lists). An exception in
    solution() is left to propagate: the sandbox reports it as a runtime_error with the traceback."""
    return code.rstrip() + "\n" + _FOOTER


def result_value(stdout: str) -> float | str | list | None:
    """The value from the footer's line: the last stdout line that is a JSON object with "value" (the
    program may have printed other lines before it). None when there is none or the value is null."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "value" in record:
            return _plain(record["value"])
    return None


def _plain(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range (printed by the program itself)
            return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str) else str(value)


# -- a safe evaluator for arithmetic expressions ----------------------------------------------------


def _power(base: float, exponent: float) -> float:
    if abs(exponent) > 1000:  # float pow overflows fast, but keep 2**10**9-style inputs cheap and finite
        raise OverflowError("exponent too large")
    result = float(base) ** float(exponent)
    if isinstance(result, complex):
        raise ValueError("complex result")
    return result


def _factorial(n: float) -> float:
    if n != int(n) or not 0 <= n <= 170:
        raise ValueError(f"factorial of {n}")
    return float(math.factorial(int(n)))


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: _power,
}
CHOICE_FUNCTIONS: dict[str, Callable[..., float]] = {"sqrt": math.sqrt, "factorial": _factorial}
CONSTANTS: dict[str, float] = {"pi": math.pi}


def evaluate(
    expression: str,
    functions: Mapping[str, Callable[..., float]] = CHOICE_FUNCTIONS,
    names: Mapping[str, float] = CONSTANTS,
) -> float:
    """The value of an arithmetic expression, by walking its `ast` over a whitelist: numbers, unary -/+,
    + - * / **, the `names` given and calls of the `functions` given. Anything else raises ValueError;
    so do division by zero, overflow and non-finite results."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -walk(node.operand) if isinstance(node.op, ast.USub) else walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Name) and node.id in names:
            return float(names[node.id])
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in functions
            and not node.keywords
        ):
            return float(functions[node.func.id](*(walk(arg) for arg in node.args)))
        raise ValueError(f"not allowed in an expression: {type(node).__name__}")

    try:
        value = walk(ast.parse(expression.strip(), mode="eval"))
    except (SyntaxError, ZeroDivisionError, OverflowError, TypeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from exc
    if not math.isfinite(value):
        raise ValueError(f"{expression!r} is not finite")
    return value


# -- choices -> numbers ---------------------------------------------------------------------------

_UNICODE = str.maketrans(
    {
        "⁄": "/",
        "∕": "/",
        "÷": "/",
        "×": "*",
        "−": "-",
        "–": "-",
        "π": " pi ",
        "√": " sqrt ",
        "½": " 1/2",
        "¼": " 1/4",
        "¾": " 3/4",
        "⅓": " 1/3",
        "⅔": " 2/3",
        "²": "^2",
        "³": "^3",
    }
)
_FUNCTION_WORD = r"(?<![a-z])(?:sqrt|pi)(?![a-z])"
# A letter joined to a number by an operator ('5t/2', 'K/8', 'x + 2', '10^s'): an algebraic answer, not a number.
_SYMBOLIC = re.compile(r"[a-z]\s*[-+*/^]\s*[\d(]|[\d)]\s*[+*/^]\s*[a-z]|[a-z]\(", re.IGNORECASE)
_CLOCK = re.compile(r"\d\s*[:.]\s*\d\d\s*[ap]\.?\s*m\b|\d\s*[ap]\s*\.?\s*m\b", re.IGNORECASE)
_UNIT_POWER = re.compile(
    r"\b(?:[mck]?m|ft|in|inch(?:es)?|feet|foot|met(?:er|re)s?|yards?|units?)\s*\^?\s*[23](?![\d.])", re.IGNORECASE
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d\d\d(?![\d.]))|(?<=\d),(?=\d\d,\d\d\d(?!\d))")  # 1,200 and 1,20,000
_WORD = re.compile(r"(?<![a-z])(?!(?:sqrt|pi)(?![a-z]))[a-z]+\.?", re.IGNORECASE)
_MIXED = re.compile(r"(?<![\d./])(\d+)\s+(\d+)\s*/\s*(\d+)")
_PIECE_GAP = re.compile(r"[,;]|(?<=[\d)!%])\s+(?=[\d(.])")


def choice_values(choice: str) -> list[float]:
    """The numbers a choice states, in order: usually one ('250 m' -> [250], 'Rs. 1,200' -> [1200],
    '3/4' -> [0.75], '1 1/2' -> [1.5], '2^5' -> [32], '2√3', 'sqrt(3)', '5π', '-10%', '1.2e5'); several
    for a pair or a list ('63, 59', '(1,1)', '-5 and 3', '± 2' -> [2, -2]); [] for text ('None of these'),
    algebra ('5t/2') and clock times ('8:30 AM'), which only a text result can match.

    A percentage is its stated number ('12.5%' -> [12.5]); `closest_choice` also tries 100x the result
    against it, since a program asked for a percentage often returns the fraction 0.125. A two-part
    ratio is its quotient ('3 : 2' -> [1.5], as the prompt asks for a / b); a longer one its parts.
    """
    text = _UNIT_POWER.sub(" ", choice.translate(_UNICODE).lower())  # 'cm 2', 'm^3'
    text = re.sub(r"(?<=[a-z])\s*/\s*(?=[a-z])", " ", text)  # 'm/sec', 'km / hr'
    if _CLOCK.search(text) or _SYMBOLIC.search(re.sub(_FUNCTION_WORD, "#", text)):
        return []
    text = text.rsplit("=", 1)[-1]  # 'q = 200'
    text = re.sub(r"(\d)\s*e\s*([+-]?\d+)\b", r"\1*10^\2", text)  # 1.2e5
    text = _THOUSANDS.sub("", text)
    text = re.sub(r"\s+(?:and|or)\s+", " ; ", text, flags=re.IGNORECASE)
    text = _WORD.sub(" ", text)  # units, currency words, 'Rs.'
    text = re.sub(r"[^\d.+\-*/^()!:%,;±\sa-z]", " ", text)  # '$', '°', quotes; letters left: sqrt, pi
    text = re.sub(r"\.(?!\d)", " ", text)  # '46.', '7.5.', 'rs . 9'
    text = re.sub(r"±\s*([\d.]+)", r"\1 ; -\1", text)
    text = _MIXED.sub(r"(\1+\2/\3)", text)
    values: list[float] = []
    for piece in _PIECE_GAP.split(text):
        values += _piece_values(piece)
    return values


def _piece_values(piece: str) -> list[float]:
    piece = piece.replace("%", " ").strip()
    while piece.count("(") > piece.count(")") and piece.startswith("("):
        piece = piece[1:].strip()
    while piece.count(")") > piece.count("(") and piece.endswith(")"):
        piece = piece[:-1].strip()
    if not re.search(r"\d|pi", piece):
        return []
    parts = [p for p in piece.split(":") if p.strip()]
    if len(parts) == 2:
        parts = [f"({parts[0]})/({parts[1]})"]
    values = []
    for part in parts:
        expr = re.sub(r"sqrt\s*([\d.]+|pi)", r"sqrt(\1)", part)
        expr = re.sub(r"(\d+)\s*!", r"factorial(\1)", expr)
        expr = re.sub(r"(?<![\d.])0+(?=\d)", "", expr).replace("^", "**")  # '09kg'
        expr = re.sub(r"([\d.)]|pi)\s*(?=sqrt|pi|factorial|\()", r"\1*", expr)  # implicit products
        expr = re.sub(r"\)\s*(?=[\d.])", ")*", expr)
        try:
            values.append(evaluate(expr))
        except ValueError:
            return []
    return values


# -- a result -> the nearest choice -------------------------------------------------------------------


def _relative(x: float, target: float) -> float:
    return abs(x - target) / abs(target) if target else abs(x)


def _text(value: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", value.lower()).split())


def choice_error(value, choice: str, ordered: bool = True) -> float:
    """How far a program's result is from one choice (relative; inf when they cannot be compared).

    A number is compared with a one-number choice (and 100x it with a percentage); a list with a choice
    of as many numbers, in order (or both sorted when not `ordered`: roots in any order), or, two numbers
    a, b, with a ratio choice as a / b; a string by its numbers if it states any ('3:2', '$1,200'), else
    by its words.
    """
    if isinstance(value, str):
        stated = choice_values(value)
        by_text = 0.0 if _text(value) and _text(value) == _text(choice) else math.inf
        if not stated:
            return by_text
        return min(by_text, choice_error(stated[0] if len(stated) == 1 else stated, choice, ordered))
    if isinstance(value, list):
        if not value or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value
        ):
            return math.inf
        if len(value) == 1:
            return choice_error(value[0], choice)
    elif not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        return math.inf
    targets = choice_values(choice)
    if isinstance(value, list):
        if len(targets) == len(value):
            pairs = zip(value, targets, strict=True) if ordered else zip(sorted(value), sorted(targets), strict=True)
            return max(_relative(v, t) for v, t in pairs)
        if len(value) == 2 and len(targets) == 1 and ":" in choice and value[1]:
            return _relative(value[0] / value[1], targets[0])
        return math.inf
    if len(targets) != 1:
        return math.inf
    error = _relative(float(value), targets[0])
    return min(error, _relative(100 * float(value), targets[0])) if "%" in choice else error


def closest_choice(item: Item, value, tolerance: float = TOLERANCE) -> tuple[str | None, float]:
    """The letter whose choice is nearest the program's result, and its relative error.

    (None, inf) when no choice is within `tolerance`, or when the nearest two tie: the same value written
    twice ('3:1' and '15:5'), or both within tolerance with the runner-up less than twice as far (981.75
    between '981.41' and '982.14', where the answer key used pi = 22/7). A tool verdict names one letter
    or abstains; the node falls back to P(TRUE) when it abstains.
    """
    errors = sorted(
        (choice_error(value, text), letter) for letter, text in zip(item.letters, item.choices, strict=True)
    )
    if not errors[0][0] <= tolerance:  # a list matching no choice in order: try as a set ('-5 and 3')
        errors = sorted(
            (choice_error(value, text, False), letter) for letter, text in zip(item.letters, item.choices, strict=True)
        )
    best, letter = errors[0]
    if not best <= tolerance:
        return None, math.inf
    if len(errors) > 1:
        second = errors[1][0]
        if math.isclose(second, best, rel_tol=1e-9, abs_tol=1e-12) or (second <= tolerance and second < 2 * best):
            return None, math.inf
    return letter, best
