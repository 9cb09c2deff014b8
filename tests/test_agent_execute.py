"""The code tool (`mcqa.agent.execute`) on real CodeMMLU items: the snippet found, its language told,
its damage repaired, and a run's result mapped to the one choice it supports (or to none).

Mapping tests give `choice_from_run` the result a run of that item produces (status, stdout, exit
code, as `mcqa.sandbox.run_program` reports them); the end-to-end tests compile and run the item's
program in the real sandbox."""

from __future__ import annotations

import ast

import pytest

from mcqa.agent.execute import Program, choice_from_run, find_program, skip_reason
from mcqa.rag.splits import load_items
from mcqa.sandbox import RunResult, missing_toolchain, run_program


@pytest.fixture(scope="module")
def items(data_root):
    return {item.id: item for item in load_items("codemmlu_fpt", "train", data_root)}


def program(items, task_id: str) -> Program:
    found = find_program(items[task_id])
    assert found is not None, skip_reason(items[task_id])
    return found


def run(found: Program) -> RunResult:
    missing = missing_toolchain(found.language)
    if missing:
        pytest.skip(missing)
    result = run_program(found.source, found.language, flags=found.flags, main_class=found.main_class)
    if result.status == "skipped":
        pytest.skip(result.reason)
    return result


def test_language_comes_from_the_question_and_the_code(items):
    assert program(items, "k01021").language == "c"  # "the following C code"
    assert program(items, "k02365").language == "cpp"  # "the following C++ code"
    assert program(items, "k04151").language == "python"
    java = program(items, "k02673")  # main sits in the second class
    assert (java.language, java.main_class) == ("java", "static_use")
    behaviour = program(items, "rt07035")  # "which behavior ...": the language is never named
    assert (behaviour.language, behaviour.kind, behaviour.main_class) == ("java", "compiles", "OneClue")
    assert "public class" not in behaviour.source  # any file name works for the sandbox


def test_squashed_c_gets_its_lines_and_headers_back(items):
    # `#include <stdio.h>    void f();    int main()    {        #define foo(x, y) x / y + x        f();`
    assert "\n" not in items["k01021"].question.split("\n", 1)[1].strip()
    found = program(items, "k01021")
    lines = [line.strip() for line in found.source.splitlines()]
    assert "#include <stdio.h>" in lines and "#define foo(x, y) x / y + x" in lines and "f();" in lines
    assert {"newlines", "headers"} <= set(found.repairs) and found.kind == "output"


def test_squashed_cpp_gets_bits_header_once(items):
    found = program(items, "k02365")
    assert found.source.count("using namespace std;") == 1 and found.source.startswith("#include <bits/stdc++.h>")
    assert 'string s = "spaces in text";' in found.source.splitlines()  # spaces inside a string kept


def test_prose_fence_tag_and_escaped_quotes_removed(items):
    # "Question 17:Find the output of the following program: \n\n\nd1 = {\"john\":40, ...} ...``````Python3"
    found = program(items, "k06694")
    assert "Question" not in found.source and "`" not in found.source and "\\" not in found.source
    ast.parse(found.source)  # parsed, not run
    assert found.language == "python" and "unescape" in found.repairs
    bare = program(items, "k05836")  # GeeksforGeeks: `class Test {...}` and "``````Java", no question at all
    assert (bare.language, bare.kind, bare.main_class) == ("java", "output", "Test") and "`" not in bare.source


def test_items_a_run_cannot_answer_are_skipped_with_a_reason(items):
    assert find_program(items["k07999"]) is None  # relational algebra
    assert skip_reason(items["k07999"]) == "not an output question"
    assert skip_reason(items["k10511"]) == "no code found"  # "What is a correct syntax to output ... in C#?"
    assert skip_reason(items["rt00114"]) == "not an output question"  # a completion item
    assert skip_reason(items["k03754"]) == "language unsupported: php"
    assert skip_reason(items["k01512"]) == "not an output question"  # "if it is executed on a 32 bit processor"
    assert skip_reason(items["k01021"]) == ""


def test_printed_output_maps_exactly(items):
    item = items["k04151"]  # print('{0:.2}'.format(1/3)); choices 0.333333 / 0.33 / ...
    assert choice_from_run(item, program(items, "k04151"), RunResult("ok", stdout="0.33\n")) == "B"
    assert choice_from_run(item, program(items, "k04151"), RunResult("ok", stdout="0.333333\n")) == "A"


def test_floats_printed_with_more_decimals_match_the_choice_that_prints_fewer(items):
    item, found = items["k02070"], program(items, "k02070")  # choices 5500.263 / 500.2635 / 500.263 / 500.266
    assert choice_from_run(item, found, RunResult("ok", stdout="500.263000\n")) == "C"
    # 0.3333333333 is both "0.333333" and "0.33": ambiguous, no letter
    assert choice_from_run(items["k04151"], program(items, "k04151"), RunResult("ok", stdout="0.3333333333")) is None


def test_failed_runs_map_to_the_choice_that_names_the_failure(items):
    compile_error = RunResult("compile_error", stderr="main.c:14:9: error: lvalue required", exit_code=1)
    assert choice_from_run(items["k01052"], program(items, "k01052"), compile_error) == "C"  # Compile time error
    segfault = RunResult("runtime_error", exit_code=139)
    assert choice_from_run(items["k10277"], program(items, "k10277"), segfault) == "C"  # segmentation fault
    timeout = RunResult("timeout", exit_code=137)
    assert choice_from_run(items["k09399"], program(items, "k09399"), timeout) == "D"  # Infinite Loop
    # three choices say "Error ...": a compile error cannot pick one
    assert choice_from_run(items["k00723"], program(items, "k00723"), compile_error) is None


def test_a_c_main_exiting_nonzero_still_printed_its_answer(items):
    # `main` falling off its end without `return` exits with whatever was in the register
    exited = RunResult("runtime_error", stdout="-4\n", exit_code=3)
    assert choice_from_run(items["k01021"], program(items, "k01021"), exited) == "B"
    assert choice_from_run(items["k01021"], program(items, "k01021"), RunResult("runtime_error", exit_code=3)) is None


def test_end_to_end_squashed_c_runs_and_maps_to_the_gold_letter(items):
    found = program(items, "k01021")
    result = run(found)
    assert (result.status, result.stdout) == ("ok", "-4\n")
    assert choice_from_run(items["k01021"], found, result) == items["k01021"].answer == "B"


def test_end_to_end_python_exception_named_by_a_choice(items):
    found = program(items, "k06694")  # print(d1 > d2) on two dicts
    result = run(found)
    assert result.status == "runtime_error" and "TypeError" in result.stderr
    assert choice_from_run(items["k06694"], found, result) == items["k06694"].answer == "D"


def test_end_to_end_behaviour_item_that_does_not_compile(items):
    # "which behavior most likely to occur": input unknown, but `class OneClue.java{` never compiles
    found = program(items, "rt07035")
    result = run(found)
    assert result.status == "compile_error"
    assert choice_from_run(items["rt07035"], found, result) == items["rt07035"].answer == "D"
    # a run that only failed for want of input says nothing about these items
    assert choice_from_run(items["rt07035"], found, RunResult("runtime_error", exit_code=1)) is None
