"""The examples check: which candidate completion of a function passes the examples in its docstring.

Some code items give a function's signature and docstring and ask which body completes it
("Which solution below is the most likely completion ...", HumanEval-style). Their docstrings
usually show calls with the expected result, in one of a few forms:

    >>> below_zero([1, 2, -4, 5])        search([4, 1, 2, 2, 3, 1]) == 2
    True                                 will_it_fly([3, 2, 3], 9) -> True
                                         Input: [4,2,3]   Output: [2, 1]

Each choice is put under the signature and called on those examples in the sandbox; the choices
that pass the most examples survive and the others are ruled out (the most, not all: docstrings have
typos, and an example every choice fails says nothing). When one choice survives, it is the tool's
letter; when several do, the model chooses among them. A distractor usually differs
from the right body in a way the examples show (a variance where a deviation was asked, an
off-by-one), but not always: examples are few, so two bodies can both pass them.

Nothing here runs code: the items are parsed with `ast` (never executed) to find the function and to
check that every example is a Python expression, and `mcqa.sandbox.run_program` runs the programs.
"""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from dataclasses import dataclass

from mcqa.types import Item

ASKS_COMPLETION = re.compile(r"most likely completion|complete the (following )?(function|code)", re.I)
_CASE_MARK = "MCQA-CASE"
# A call and its expected result on one docstring line: `f(x) == 2`, `f(x) ➞ 2`, `f(x) -> 2`, `f(x) ==> 2`,
# `f(x) = 2`, after an optional `>>>`, `*`, `-`, `assert` or `for`.
_INLINE = re.compile(
    r"^\s*(?:>>>|[*-]|assert\b|for\b)?\s*(?P<call>(?P<name>[A-Za-z_]\w*)\(.*\))\s*"
    r"(?:==>|==|➞|->|=>|→|(?<![=!<>])=(?!=)|should return|returns?)\s*(?P<want>.+)$"
)
# "For lst = [1,2,3] the output should be 14": keyword arguments, then the result.
_FOR = re.compile(r"^\s*For (?P<args>\w+\s*=.+?),?\s+the (?:output|result) should be\s*(?P<want>.+)$", re.I)
_INPUT = re.compile(r"^\s*Input\s*:\s*(?P<args>.+)$", re.I)
_OUTPUT = re.compile(r"^\s*Output\s*:\s*(?P<want>.+)$", re.I)

# Run inside the sandbox after the completed function: each example prints whether it passed, so a
# choice that hangs on one example still shows the ones before it. Floats compare to 1e-6 (relative).
# The mark carries a digest of the program, which a choice cannot know when it is written, so a body
# that prints marks of its own does not pass examples it fails.
_CHECKER = """

def _mcqa_eq(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(a - b) <= 1e-6 * max(1.0, abs(b))
        except Exception:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b) and len(a) == len(b):
        return all(_mcqa_eq(x, y) for x, y in zip(a, b))
    return a == b


def _mcqa_case(call, want):
    try:
        ok = _mcqa_eq(call(), want())
    except BaseException:
        ok = False
    print(_MCQA_MARK, int(bool(ok)), flush=True)

"""


@dataclass(frozen=True)
class Example:
    call: str  # a Python expression calling the function
    want: str  # a Python expression for the expected value

    def line(self) -> str:
        return f"_mcqa_case(lambda: ({self.call}), lambda: ({self.want}))"


@dataclass(frozen=True)
class Completion:
    """A function to complete: the code given (up to and including its docstring), the function's name
    and the examples found in its docstring."""

    code: str
    name: str
    examples: tuple[Example, ...]

    def program(self, choice: str) -> str | None:
        """The code with `choice` as the function's body and the examples after it, or None when no
        indentation of the choice makes a program Python can parse."""
        for body in _bodies(choice, _body_indent(self.code)):
            source = self.code.rstrip() + "\n" + body + "\n"
            if _parses(source):
                mark = f"{_CASE_MARK}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"
                cases = "\n".join(e.line() for e in self.examples)
                return f"{source}\n_MCQA_MARK = {mark!r}\n{_CHECKER}{cases}\n"
        return None


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a NUL byte; nesting too deep
        return False
    return True


def _expression(text: str) -> str | None:
    """`text` if it is one Python expression (parsed, never evaluated); a trailing `# comment` or a
    worked sum before the result (`19 - 5 - 6 = 8`) is dropped first when that is what stops it."""
    text = text.strip().rstrip(".,;").strip()
    for candidate in (text, text.split(" #")[0].strip(), text.rsplit("=", 1)[-1].strip()):
        if candidate:
            try:
                ast.parse(candidate, mode="eval")
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            return candidate
    return None


def _examples(docstring: str, name: str) -> list[Example]:
    """The calls of `name` in a docstring with their expected results, in the forms the module shows."""
    lines = docstring.replace("\r", "").split("\n")
    found: list[Example] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        inline = _INLINE.match(line)
        if inline and inline.group("name") == name:
            pair = (inline.group("call"), inline.group("want"))
        elif stripped.startswith(">>>"):
            want = []
            for after in lines[i + 1 :]:
                if not after.strip() or after.strip().startswith(">>>"):
                    break
                want.append(after.strip())
            pair = (stripped[3:].strip(), " ".join(want))
        elif m := _FOR.match(line):
            pair = (f"{name}({m.group('args').strip()})", m.group("want"))
        elif (m := _INPUT.match(line)) and i + 1 < len(lines):
            out = next((_OUTPUT.match(x) for x in lines[i + 1 : i + 3] if _OUTPUT.match(x)), None)
            if out is None:
                continue
            pair = (f"{name}({m.group('args').strip()})", out.group("want"))
        else:
            continue
        call, want = _expression(pair[0]), _expression(pair[1])
        calls = rf"\b{re.escape(name)}\s*\("
        if call and want and re.search(calls, call) and not re.search(calls, want) and "print" not in call:
            found.append(Example(call, want))
    return found


def _body_indent(code: str) -> str:
    """The indentation of the docstring's first line: where the function's body stands."""
    last_def = list(re.finditer(r"^([ \t]*)def \w+", code, re.M))[-1]
    return last_def.group(1) + "    "


def _bodies(choice: str, indent: str) -> list[str]:
    """The choice re-indented under the signature: dedented as a block, or, where its first line lost
    the indentation the others kept (a stripped first line), the first line and the rest apart."""
    lines = choice.replace("\t", "    ").rstrip().split("\n")
    out = [textwrap.indent(textwrap.dedent("\n".join(lines)), indent)]
    rest = [line for line in lines[1:] if line.strip()]
    if rest:
        first_indent = len(lines[0]) - len(lines[0].lstrip())
        rest_indent = min(len(line) - len(line.lstrip()) for line in rest)
        if first_indent < rest_indent:
            head = indent + lines[0].strip()
            inner = indent + ("    " if lines[0].rstrip().endswith(":") else "")
            out.append(head + "\n" + textwrap.indent(textwrap.dedent("\n".join(lines[1:])), inner))
    return out


def find_completion(item: Item) -> Completion | None:
    """The function an item asks to complete, with its docstring's examples; None when the item does
    not ask for a completion, its code does not parse with a body, or its docstring shows no example."""
    if not ASKS_COMPLETION.search(item.question):
        return None
    code = _code_of(item.question)
    if code is None or not re.search(r"^[ \t]*def \w+", code, re.M):
        return None
    try:
        tree = ast.parse(code.rstrip() + "\n" + _body_indent(code) + "pass\n")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    target = max(functions, key=lambda n: n.lineno)  # the last one is left to complete
    examples = _examples(ast.get_docstring(target) or "", target.name)
    return Completion(code, target.name, tuple(examples)) if examples else None


def _code_of(question: str) -> str | None:
    """The code after the question's prose: from the first `from`/`import`/`def` line on."""
    match = re.search(r"^(from\s+\w+\s+import|import\s+\w+|def\s+\w+)", question, re.M)
    return question[match.start() :] if match else None


def skip_reason(item: Item) -> str:
    if not ASKS_COMPLETION.search(item.question):
        return "not a completion question"
    return "no examples in the docstring" if _code_of(item.question) else "no function found"


def examples_passed(stdout: str, program: str) -> int:
    """How many examples a run of `program` printed a pass for (under that program's own mark)."""
    mark = re.search(r"^_MCQA_MARK = '([\w-]+)'$", program, re.M)
    if mark is None:
        return 0
    return sum(m == "1" for m in re.findall(rf"^{re.escape(mark.group(1))} ([01])$", stdout, re.M))
