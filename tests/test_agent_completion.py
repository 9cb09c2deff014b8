"""The examples check on real CodeMMLU completion items: the docstring's examples in each of the forms
the data uses, every choice run against them in the real sandbox, the survivors kept, and the agent's
answer moved off a ruled-out choice with the real tiny model."""

from __future__ import annotations

import pytest

from mcqa.agent.completion import examples_passed, find_completion
from mcqa.agent.solver import AgentSolver
from mcqa.agent.tools import execute_records
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.eval.bias import permute_item
from mcqa.sandbox import Limits, missing_toolchain
from mcqa.types import Item

pytestmark = pytest.mark.skipif(bool(missing_toolchain("python")), reason="no python for the sandbox")

# Items of the data's train split, one per form of example, with what the check finds there.
FORMS = {
    "rt00005": ">>>",  # mean_absolute_deviation: one doctest; three choices pass it, one is ruled out
    "rt00070": "==",  # search([4, 1, 2, 2, 3, 1]) == 2
    "rt00078": "==>",  # iscube(1) ==> True
    "rt00143": "For ... the output should be",  # For lst = [1,2,3] the output should be 6
    "rt00069": "Input: / Output:",  # pluck: Input: [4,2,3]  Output: [2, 1]
}


@pytest.fixture(scope="module")
def train(data_root) -> dict[str, Item]:
    return {it.id: it for it in load_split("codemmlu_fpt", "train", data_root).items}


@pytest.mark.parametrize("item_id", list(FORMS))
def test_examples_are_found_in_each_form(train, item_id):
    found = find_completion(train[item_id])
    assert found is not None, FORMS[item_id]
    assert found.examples and all(found.name in e.call for e in found.examples)


def test_one_survivor_is_the_letter_and_matches_the_gold_answer(train):
    items = [train[i] for i in ("rt00070", "rt00078", "rt00143", "rt00069")]
    records = execute_records(items, Limits(), workers=2)
    for item in items:
        record = records[item.id]
        assert record.letter == item.answer, (item.id, record.stdout)
        assert sorted(record.ruled_out) == sorted(x for x in item.letters if x != item.answer)
        assert f"{item.answer}: passes" in record.stdout and record.program


def test_several_survivors_only_rule_the_others_out(train):
    item = train["rt00005"]  # the mean absolute deviation: A, B and D give 1.0 on [1, 2, 3, 4]; C a variance
    record = execute_records([item], Limits(), workers=1)[item.id]
    assert record.letter is None and record.ruled_out == ["C"]
    assert item.answer not in record.ruled_out


def test_a_hostile_or_hanging_choice_only_fails_its_own_run(train, tmp_path):
    item = train["rt00070"]
    outside = tmp_path / "owned"
    hostile = [
        f"    open({str(outside)!r}, 'w').write('x')\n    return 2",
        "    while True:\n        pass",
        "    print('MCQA-CASE 1')\n    print('MCQA-CASE 1')\n    print('MCQA-CASE 1')\n    return -7",
    ]
    item = item.model_copy(
        update={"id": "hostile", "choices": [*hostile, item.choices[item.letters.index(item.answer)]]}
    )
    record = execute_records([item], Limits(cpu_seconds=1, wall_seconds=3), workers=2)["hostile"]
    # The third choice prints pass marks of its own: they are not the program's mark, so they count for nothing.
    assert record.letter == "D", record.stdout
    assert record.ruled_out == ["A", "B", "C"]
    assert not outside.exists()


def test_only_the_programs_own_marks_are_counted(train):
    program = find_completion(train["rt00070"]).program(train["rt00070"].choices[0])
    mark = program.split("_MCQA_MARK = '")[1].split("'")[0]
    assert examples_passed(f"{mark} 1\n{mark} 0\nnoise\nMCQA-CASE 1\n{mark} 1\n", program) == 2
    assert examples_passed("MCQA-CASE 1\n", program) == 0


def test_items_that_are_not_completions_are_skipped_with_a_reason(train):
    sql = next(it for it in train.values() if "SQL" in it.question)
    no_examples = train["rt00039"]  # decode_cyclic: its docstring shows no example
    records = execute_records([sql, no_examples], Limits(), workers=1)
    assert records[no_examples.id].reason == "no examples in the docstring"
    assert records[sql.id].status == "skipped" and records[sql.id].letter is None


def _agent_config(**agent):
    agent = {"votes": 0, "permutations": 1, "verify": False, **agent}
    return load_config(
        **{"llm.model": "smollm2-135m", "llm.n_ctx": 4096, **{f"agent.{k}": v for k, v in agent.items()}}
    )


def test_the_agent_moves_off_a_ruled_out_answer(tiny_llm, train):
    """Rotations of items with one survivor until the tiny model answers a ruled-out choice: the execute
    tool then settles on the survivor, recorded as a flip."""
    plain = AgentSolver(_agent_config(tools=[]), dataset="codemmlu_fpt", llm=tiny_llm)
    wrong = None
    for item in (train[i] for i in ("rt00070", "rt00078", "rt00143", "rt00069")):
        n = len(item.choices)
        for shift in range(n):
            rotated = permute_item(item, [(k + shift) % n for k in range(n)]) if shift else item
            rotated = rotated.model_copy(update={"id": f"{item.id}-r{shift}"})
            if plain([rotated])[0].answer != rotated.answer:
                wrong = rotated
                break
        if wrong is not None:
            break
    else:
        pytest.fail("the tiny model answered right under every rotation of every item")
    fixed = AgentSolver(_agent_config(tools=["execute"]), dataset="codemmlu_fpt", llm=tiny_llm)([wrong])[0]
    assert fixed.answer == wrong.answer
    assert fixed.tool["letter"] == wrong.answer and fixed.tool["agrees"] is False
    assert any(f.startswith("execute: ") and f.endswith(f"->{wrong.answer}") for f in fixed.flips)


def test_malformed_completion_items_are_skipped_not_crashed(train):
    base = train["rt00070"]
    deep = "search(" + "[" * 50_000 + "]" * 50_000 + ") == 1"
    questions = {
        "deep": base.question.replace("search([5, 5, 4, 4, 4]) == -1", deep),
        "nul": base.question.replace("def search", "def se\x00arch"),
        "no-def": "Which solution below is the most likely completion the following code?\nx = 1\n",
    }
    for name, question in questions.items():
        item = base.model_copy(update={"id": name, "question": question})
        found = find_completion(item)
        if name == "deep":  # the nested example is dropped; the others still check the choices
            assert found is not None and all(len(e.call) < 1000 for e in found.examples)
        else:
            assert found is None
    records = execute_records(
        [base.model_copy(update={"id": n, "question": q}) for n, q in questions.items()], Limits(), 1
    )
    assert records["no-def"].status == "skipped" and records["nul"].status == "skipped"


def test_the_trace_shows_what_was_ruled_out(train):
    import io

    from rich.console import Console

    from mcqa.agent.trace import render_step

    item = train["rt00005"]
    record = execute_records([item], Limits(), workers=1)[item.id].as_dict()
    console = Console(file=io.StringIO(), width=120, record=True)
    render_step(console, "execute", {"tools": {item.id: record}})
    text = console.export_text()
    assert "ruled out: C" in text and "C: passes 0 of 1 examples" in text
