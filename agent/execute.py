"""The code tool: turn a CodeMMLU item into a program the sandbox can run, and its run into a letter.

Many CodeMMLU items ask what a snippet prints, or whether it compiles; running the snippet answers
that better than any model's opinion. The snippets are rarely runnable as they stand (of 179 C
"output" items, 154 fail to compile): prose around the code, newlines lost (a squashed line where
runs of spaces stood for line breaks), `#include` with its header eaten by an HTML filter, no
`main`, typographic quotes, zero-width marks, and GeeksforGeeks items whose quotes are
backslash-escaped and whose language tag trails the code ("``````C++"). `find_program` repairs
what can be repaired without guessing and says which repairs it made; where a guess would be
needed (squashed Python has lost its indentation) it returns None and `skip_reason` says why.

Nothing here runs code: `mcqa.sandbox.run_program` does, and `choice_from_run` only reads its result.
"""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcqa.sandbox import RunResult
    from mcqa.types import Item

LANGUAGES = ("python", "c", "cpp", "java")


@dataclass(frozen=True)
class Program:
    """A complete program and how to build it.

    `main_class` (Java) names the class whose `main` runs; top-level classes lose `public`, so the
    sandbox may write the file as `{main_class}.java` whatever the original names were. `flags` are
    extra compiler arguments for `run_program`; none is needed so far (the sandbox compiles C as gnu99
    with -w, which accepts old-style C, and links -lm).
    """

    language: str
    source: str
    kind: str  # "output": choices are outputs; "compiles": choices speak of compile/runtime errors
    repairs: tuple[str, ...] = ()
    main_class: str | None = None
    flags: tuple[str, ...] = ()


# --- reading the question ------------------------------------------------------------------------

# Invisible marks and typographic quotes break compilers and keep a printed output from matching a choice.
_CHARS = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u00a0": " ",
        "\u2003": " ",
        "\u2002": " ",
        "\u2009": " ",
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
        "\u00ad": None,
        "\u2013": "-",
        "\u2212": "-",
    }
)


def clean(text: str) -> str:
    """ASCII quotes, plain spaces, no invisible marks, `\\n` line ends (some rows use bare `\\r`), HTML
    entities decoded (`cout &lt;&lt; &quot;hi&quot;`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CHARS)
    return html.unescape(text) if re.search(r"&(quot|lt|gt|amp|#\d+);", text) else text


# The question asks for a run's result: what it prints, or what happens when it runs.
_OUTPUT_ASK = re.compile(r"\b(output|print(s|ed)?|happens?|executed)\b", re.I)
# ...but not these, which a run cannot answer (a count of calls, a complexity, a missing line).
# Nor where the answer depends on what the run is given (arguments, input), on a condition the sandbox
# does not meet ("if it is executed on a 32 bit processor", "if the system date is ...") or on two compilers.
_NOT_A_RUN = re.compile(
    r"complexity|how many times|fill in|complete the|correction|trying to|_{3,}|"
    r"does the following (piece of )?code do|point out|pseudo|command|true about|"
    r"correct about|output like|\bC and C\+\+|input is|\b(16|32)[- ]?bit\b|"
    r"\bif\b(?!\s+(the\s+)?following\b)",
    re.I,
)
_BEHAVIOUR_ASK = re.compile(r"which behavior most likely to occur", re.I)
# GeeksforGeeks items end the code with a fence and a language tag: "``````Python3".
_FENCE_TAG = re.compile(r"\n?`{3,}\s*([A-Za-z+#]*\d*)[ \t]*(?:\n|$)")
_NAMED = re.compile(
    r"\b(c\+\+|cpp|c#|c|java(?:script)?|python\s*\d?|php|r|sql|bash|shell|kotlin|"
    r"go|ruby|perl|scala|swift|rust)\b(?=[\s\w-]*\b(code|program|snippet|statement|"
    r"expression)s?\b)",
    re.I,
)
_TAG_NAMES = {
    "c++": "cpp",
    "cpp": "cpp",
    "c": "c",
    "java": "java",
    "python": "python",
    "python3": "python",
    "python2": "python2",
    "python 3": "python",
    "c#": "csharp",
    "javascript": "javascript",
    "php": "php",
    "r": "r",
    "sql": "sql",
    "bash": "shell",
    "shell": "shell",
}


def _split(question: str) -> tuple[str, str, str | None]:
    """(prose, code, language named by a fence tag): the question text around the code, and the code."""
    text = clean(question).strip()
    tag = None
    fence = _FENCE_TAG.search(text)
    if fence:  # code first, then the tag, then (sometimes) the question
        tag = fence.group(1).lower() or None
        code, after = text[: fence.start()], text[fence.end() :]
        head = _OUTPUT_ASK.search(code.split("\n", 1)[0][:300])
        if head and not code.lstrip().startswith(("#", "class", "import", "def", "public")):
            end = _prose_end(code, head.end())
            return code[:end] + "\n" + after, code[end:], tag
        return after, code, tag
    first = text.split("\n", 1)[0][:400]  # the question sentence comes first, the code after it
    head = _BEHAVIOUR_ASK.search(first) or _OUTPUT_ASK.search(first)
    if not head:
        return "", text, None
    end = _prose_end(text, head.end())
    return text[:end], text[end:], None


def _prose_end(text: str, start: int) -> int:
    """Where the question sentence that mentions the output ends: its `?` or `:`, else the line end."""
    match = re.compile(r"[?:]|\n").search(text, start)
    if not match:
        return len(text)
    return match.end()


def _language(prose: str, code: str, tag: str | None) -> str | None:
    """The snippet's language: the question or the fence tag names it, and code cues settle C vs C++."""
    named = _NAMED.search(prose)
    lang = _TAG_NAMES.get(re.sub(r"\s+", " ", named.group(1).lower())) if named else None
    lang = lang or _TAG_NAMES.get(tag or "")
    cpp = re.search(
        r"\b(cout|cin|std::|using\s+namespace|template\s*<|iostream|class\s+\w+\s*[:{]|"
        r"bits/stdc\+\+)",
        code,
    )
    if lang in ("c", "cpp") or lang is None and re.search(r"^\s*#?\s*include\s*<", code, re.M):
        return "cpp" if lang == "cpp" or cpp else "c"
    if lang:
        return lang
    if re.search(r"^\s*#!", code):
        return "shell"
    if re.search(r"System\.out\.|public\s+static\s+void\s+main", code):
        return "java"
    if re.search(r"<\?php|\$\w+\s*=", code):
        return "php"
    if re.search(r"console\.log|document\.|\blet\s+\w+\s*=", code):
        return "javascript"
    if re.search(r"Console\.Write", code):
        return "csharp"
    if re.search(r"^\s*(def |print\b|import |from \w+ import |elif\b)|\b(raw_)?input\(\)", code, re.M):
        return "python"
    if re.search(r"\bprintf\s*\(", code):
        return "c"
    return None


# --- repairs -------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')


def _unescape(code: str, repairs: list[str]) -> str:
    """GeeksforGeeks escaped every quote and backslash (`printf(\\"%d\\\\n\\")`): undo it where the first
    quote of the code is escaped, which never happens in code written as is."""
    first = min((i for i in (code.find('"'), code.find("'")) if i >= 0), default=-1)
    if first > 0 and code[first - 1] == "\\":
        repairs.append("unescape")
        return re.sub(r'\\(["\\\'])', r"\1", code)
    return code


def _unsquash(code: str, repairs: list[str]) -> str:
    """Lost newlines, where runs of spaces (indentation once) now separate the lines: a run of two or
    more spaces or a tab outside a string literal becomes a line break, and every `#` directive starts
    its own line. Only C-like code: there line breaks matter only for directives and `//` comments."""
    lines = [line for line in code.splitlines() if line.strip()]
    squashed = any(len(re.findall(r"\S {3,}(?=\S)", line)) >= 2 for line in lines) or re.search(
        r"\S[ \t]*#\s*(include|define)\b|#\s*include\s*<[^>\n]*>[ \t]*[^\s/]", code
    )
    if not squashed:
        return code
    repairs.append("newlines")
    code = re.sub(r"#[ \t]*include[ \t]*", "#include ", code)
    out, last = [], 0
    for literal in _STRING.finditer(code):
        out.append(re.sub(r"[ \t]{2,}|\t", "\n", code[last : literal.start()]))
        out.append(literal.group())
        last = literal.end()
    out.append(re.sub(r"[ \t]{2,}|\t", "\n", code[last:]))
    code = "".join(out)
    code = re.sub(r"(?<=\S)[ \t]*(#\s*(include|define|undef|if|ifdef|ifndef|else|endif|pragma)\b)", r"\n\1", code)
    return re.sub(r"(#\s*include\s*(<[^>\n]*>|\"[^\"\n]*\"))[ \t]*(?=\S)", r"\1\n", code)


# Headers every C snippet may lean on, and POSIX ones added only where the code names what they
# declare (always adding <unistd.h> would clash with snippets that define their own `read` or `link`)
# and includes nothing itself: a snippet that includes <stdio.h> but not <semaphore.h> is often asking
# about exactly that error.
_C_HEADERS = ("stdio.h", "stdlib.h", "string.h", "math.h", "ctype.h", "limits.h", "stdbool.h")
_C_ON_DEMAND = {
    "errno.h": r"\berrno\b|\bE[A-Z]{3,}\b",
    "signal.h": r"\bSIG[A-Z]+\b|\bsignal\s*\(",
    "unistd.h": r"\b(fork|getpid|getppid|sleep|pipe|execl\w*|_exit)\s*\(",
    "sys/wait.h": r"\bwait(pid)?\s*\(",
    "pthread.h": r"\bpthread_",
    "semaphore.h": r"\bsem_t\b",
    "assert.h": r"\bassert\s*\(",
    "time.h": r"\btime\s*\(|\bclock\s*\(|\bCLOCKS_PER_SEC\b",
}
_MAIN = re.compile(r"\bmain\s*\(")
_FUNCTION = re.compile(r"^[\w\s\*&:<>,]*\b\w+\s*\([^;{}]*\)\s*(const\s*)?\{", re.M)


_INCLUDE = re.compile(r"^[ \t]*#?[ \t]*include\b(.*)$", re.M)


def _fix_include(match: re.Match) -> str:
    """`#include` whose header an HTML filter ate (`#include `), cut (`<stdio.`) or spaced (`<assert. h>`);
    a dropped one is made up for by the standard headers added afterwards."""
    header = re.sub(r"\s+", "", match.group(1))
    return f"#include {header}" if re.fullmatch(r'<[\w./+]+>|"[\w./+]+"', header) else ""


def _c_family(code: str, lang: str, repairs: list[str]) -> str | None:
    """Headers an HTML filter ate or the author left out, and a `main` around bare statements."""
    code = _unsquash(code, repairs)
    fixed = _INCLUDE.sub(_fix_include, code)
    if re.sub(r"\s", "", fixed) != re.sub(r"\s", "", code):
        repairs.append("broken include")
        code = fixed
    if not _MAIN.search(code):
        if _FUNCTION.search(code):
            return None  # functions but no caller: nothing would be printed
        repairs.append("main")
        code = "int main(void) {\n" + code + "\nreturn 0;\n}\n"
    if lang == "c":
        wanted = list(_C_HEADERS)
        if not re.search(r"#\s*include", code):
            wanted += [h for h, uses in _C_ON_DEMAND.items() if re.search(uses, code)]
        missing = [h for h in wanted if not re.search(r"#\s*include\s*<" + re.escape(h), code)]
        if missing:
            repairs.append("headers")
            code = "".join(f"#include <{h}>\n" for h in missing) + code
    else:
        header, using = "#include <bits/stdc++.h>\n", "using namespace std;\n"
        if "bits/stdc++.h" not in code:
            repairs.append("headers")
            code = header + ("" if re.search(r"using\s+namespace\s+std", code) else using) + code
    return code


_CLASS = re.compile(r"^([ \t]*)((?:public|final|abstract|static|\s)*)(class|interface|enum)\s+(\w+)", re.M)


def _java(code: str, repairs: list[str]) -> tuple[str, str] | None:
    """(source, main class): the class declaring `main`, top-level `public` dropped so any file name
    works, a `package` line dropped (it would need a folder), common imports added."""
    code = _unsquash(code, repairs)
    if re.search(r"^\s*package\s+[\w.]+\s*;", code, re.M):
        repairs.append("package")
        code = re.sub(r"^\s*package\s+[\w.]+\s*;", "", code, flags=re.M)
    if not re.search(r"\bstatic\s+void\s+main\s*\(", code):
        if _CLASS.search(code) or _FUNCTION.search(code):
            return None
        repairs.append("main")
        code = "class Main {\npublic static void main(String[] args) throws Exception {\n" + code + "\n}\n}\n"
    main_class = None
    for match in _CLASS.finditer(code):
        body = code[match.end() :]
        following = _CLASS.search(body)
        if re.search(r"\bstatic\s+void\s+main\s*\(", body[: following.start()] if following else body):
            main_class = match.group(4)
            break
    if main_class is None:
        return None
    if re.search(r"^\s*public\s+(final\s+|abstract\s+)*(class|interface|enum)\b", code, re.M):
        repairs.append("public")
        code = re.sub(r"^(\s*)public\s+((final\s+|abstract\s+)*(class|interface|enum)\b)", r"\1\2", code, flags=re.M)
    if not re.search(r"^\s*import\s", code, re.M):
        repairs.append("imports")
        code = "import java.util.*;\nimport java.io.*;\n" + code
    return code, main_class


def _python(code: str, repairs: list[str]) -> str | None:
    """Python cannot be unsquashed (the indentation is lost): a long one-liner that does not parse is
    given up. Other code that does not parse still runs: in the "which behaviour" items its
    SyntaxError is the answer (CodeNet calls it a Runtime Error)."""
    code = "\n".join(line.rstrip() for line in code.strip("\n").splitlines())
    # a common indent left by the page (every line starts with 4 spaces)
    indents = [len(line) - len(line.lstrip()) for line in code.splitlines() if line.strip()]
    if indents and min(indents) > 0:
        repairs.append("dedent")
        code = "\n".join(line[min(indents) :] for line in code.splitlines())
    try:
        ast.parse(code)  # parsed only, never run here
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        if len([line for line in code.splitlines() if line.strip()]) <= 1 and len(code) > 80:
            return None  # squashed: a line break may hide anywhere
    return code + "\n"


# --- the API -------------------------------------------------------------------------------------

# Choices that only name a verdict ("Compile Error", "Time Limit Exceeded", "No abnormally found").
_ERROR_VOCAB = re.compile(r"^\s*(compil\w*|run[- ]?time|time limit|memory limit|internal|no abnormally)\b", re.I)


def _kind(item: Item) -> str:
    return "compiles" if all(_ERROR_VOCAB.match(clean(c)) for c in item.choices) else "output"


# How a snippet given without any question starts (then its choices are what it prints).
_CODE_START = re.compile(
    r"\s*(#\s*include|#\s*define|//|/\*|((public|final)\s+)?class\s|import\s|def\s|"
    r"using\s|(int|void|char|float|double|long|struct|static|extern|const|unsigned)\b|"
    r"print\s*\(|\w+\s*=[^=])"
)


def _analyse(item: Item) -> Program | str:
    """The program, or why there is none."""
    prose, code, tag = _split(item.question)
    behaviour = bool(_BEHAVIOUR_ASK.search(prose))
    bare = tag is not None and not prose.strip() and _CODE_START.match(code)  # GeeksforGeeks: code and tag only
    if not (behaviour or bare) and (not _OUTPUT_ASK.search(prose) or _NOT_A_RUN.search(prose)):
        return "not an output question"
    if not re.search(r"[;(){}=]", code):
        return "no code found"
    lang = _language(prose, code, tag)
    if lang is None:
        return "language unknown"
    if lang not in LANGUAGES:
        return f"language unsupported: {lang}"
    repairs: list[str] = []
    code = _unescape(code, repairs)
    main_class = None
    if lang == "python":
        source = _python(code, repairs)
        if source is None:
            return "squashed python"
    elif lang == "java":
        found = _java(code, repairs)
        if found is None:
            return "no main"
        source, main_class = found
    else:
        source = _c_family(code, lang, repairs)
        if source is None:
            return "no main"
    kind = "compiles" if behaviour else _kind(item)
    return Program(lang, source, kind, tuple(dict.fromkeys(repairs)), main_class)


def find_program(item: Item) -> Program | None:
    """The item's snippet as a complete program, or None where a run cannot answer the item."""
    found = _analyse(item)
    return found if isinstance(found, Program) else None


def skip_reason(item: Item) -> str:
    """Why `find_program` gives None for `item` ("" when it gives a program)."""
    found = _analyse(item)
    return "" if isinstance(found, Program) else found


# --- mapping a run to a letter -------------------------------------------------------------------

_ERRORS = {  # run status -> what a choice says for it, most specific first
    "compile_error": [r"compil|syntax\s*error|compile[- ]time", r"^(?!.*(run|segment|exception)).*\berror\b"],
    "runtime_error": [r"run[- ]?time|crash|exception|abort|core dump", r"^(?!.*(compil|syntax)).*\berror\b"],
    "timeout": [r"infinite|forever|endless|never (ends|terminates|stops)|time limit|hangs?\b"],
    "output_limit": [r"infinite|forever|endless|time limit"],
    "memory": [r"memory limit|out of memory|memory error"],
}
_SEGFAULT = r"segmentation|segmentaion|seg\s*fault|crash|core dump"  # SIGSEGV, SIGBUS: exit 139, 135
# A Python run that failed for want of something the sandbox lacks (a module, a display, a data file),
# or could not even be parsed (Python 2, pseudo-code, a page's lost indentation): says nothing of the item.
_NOT_THE_PROGRAM = re.compile(
    r"\b(ModuleNotFoundError|ImportError|FileNotFoundError|TclError|SyntaxError|"
    r"IndentationError|TabError)\b"
)
_SAYS_OUTPUT = re.compile(
    r"^(the\s+|this\s+)?(output|it|program|code)\s+(will\s+be|is|prints?|will\s+print|"
    r"displays?)\s*:?\s*",
    re.I,
)
_NOTHING = re.compile(r"\bnothing\b|\bno output|not (print|display|output) anything|blank|^empty", re.I)
_NUMBER = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def _norm(text: str) -> str:
    text = _SAYS_OUTPUT.sub("", clean(text).strip())
    return re.sub(r"\s+", " ", text).strip()


def _payload(choice: str) -> str | None:
    """What a wordy choice says is printed: "It will run without any error and prints 3" -> "3"."""
    said = re.search(r"\b(?:prints?|printed|outputs?|displays?)\b\s*:?\s*(.+)$", choice, re.I)
    return said.group(1).strip("'\" ") if said else None


def _same_tokens(printed: str, choice: str) -> bool:
    """Equal token by token, numbers compared as the choice writes them (`0.330000` is `0.33`,
    `5.000000` is `5.0` and `5`, but `5.5` is not `6`), quotes and brackets around a token ignored."""
    ours, theirs = re.split(r"[\s,]+", printed), re.split(r"[\s,]+", choice)
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        a, b = a.strip("'\"[](){}"), b.strip("'\"[](){}")
        if a == b:
            continue
        if not (_NUMBER.match(a) and _NUMBER.match(b)) or "." not in a:
            return False
        if "." in b and round(float(a), len(b.split(".")[1])) == float(b):
            continue  # printed with more decimals than the choice shows
        if "." in b or float(a) != float(b):  # an integer choice: only for `20.000000`
            return False
    return True


def _unique(letters: list[str]) -> str | None:
    return letters[0] if len(letters) == 1 else None


def choice_from_run(item: Item, program: Program, result: RunResult) -> str | None:
    """The one choice the run supports, or None (no choice matches, or several do).

    Stdout is compared at growing looseness, the first level with a match deciding: exact after
    whitespace folding; ignoring all white space; token by token with numbers rounded the way the
    choice prints them; what a wordy choice says is printed ("... and prints 3"); letters and digits
    only. A failed run maps to the choices that name its failure (a segfault, the exception's name, a
    compile error, an infinite loop). A Python run that failed to parse or to import says nothing: the
    page lost its indentation, or the code is Python 2. In the "which behaviour" items the input is
    unknown, so only a failed compile says anything: Java's is a "Compile Error", Python's SyntaxError
    a "Runtime Error" (so CodeNet, where these items come from, files them).
    """
    letters, choices = item.letters, [_norm(c) for c in item.choices]
    status = result.status
    if status == "skipped":
        return None
    if program.kind == "compiles":
        syntax = status == "compile_error" or status == "runtime_error" and "SyntaxError" in result.stderr
        if not syntax:
            return None
        wanted = "runtime error" if program.language == "python" else "compile error"
        return _unique([x for x, c in zip(letters, choices, strict=True) if c.lower() == wanted])
    exited = status == "runtime_error" and program.language in ("c", "cpp") and 0 < (result.exit_code or 0) < 128
    if status == "ok" or exited:  # a C `main` without `return 0` exits with garbage: still its output
        printed = _norm(result.stdout)
        if not printed:
            return _unique([x for x, c in zip(letters, choices, strict=True) if _NOTHING.search(c)])
        for same in (
            lambda c: c == printed,
            lambda c: re.sub(r"\s+", "", c) == re.sub(r"\s+", "", printed),
            lambda c: _same_tokens(printed, c),
            lambda c: _payload(c) == printed,
            lambda c: re.sub(r"\W+", "", c) == re.sub(r"\W+", "", printed),
        ):
            found = [x for x, c in zip(letters, choices, strict=True) if c and same(c)]
            if found:
                return _unique(found)
        return None
    if status == "runtime_error" and program.language == "python" and _NOT_THE_PROGRAM.search(result.stderr):
        return None
    if status == "runtime_error" and result.exit_code in (139, 135):
        found = [x for x, c in zip(letters, choices, strict=True) if re.search(_SEGFAULT, c, re.I)]
        if found:
            return _unique(found)
    if status == "runtime_error" and program.language in ("python", "java"):
        # a choice naming the exception: "TypeError", "ArithmeticException"
        names = set(re.findall(r"\b(\w+(?:Error|Exception))\b", result.stderr))
        named = [
            x
            for x, c in zip(letters, choices, strict=True)
            if set(re.findall(r"\b\w+(?:Error|Exception)\b", c)) & names
        ]
        if named:
            return _unique(named)
    for pattern in _ERRORS.get(status, []):
        found = [x for x, c in zip(letters, choices, strict=True) if re.search(pattern, c, re.I)]
        if found:
            return _unique(found)
    return None
