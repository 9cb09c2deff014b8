"""The agent's tools: check an answer by running something instead of asking the model its opinion.

- `execute`: a code item's snippet, completed into a program (mcqa.agent.execute), compiled and run in
  the sandbox; its stdout or the compiler's verdict names a choice. An item that asks which body
  completes a function is checked instead against its docstring's examples (mcqa.agent.completion):
  every choice is run, those that pass fewer examples than the best are ruled out, and a single
  survivor is the letter.
- `compute`: for a math item (most of its choices are numbers), the LLM writes `def solution()` in one
  batched call (program-aided answering, mcqa.agent.compute); the sandbox runs it and the result's
  closest choice is the tool's letter.

Each item gets one record (`ToolRecord.as_dict`), kept in the state, the trace and the prediction:
the tool, the program, its status, stdout/stderr (cut), exit status, seconds, and the letter it named
or why it named none. Programs run in parallel threads: each is a sandboxed subprocess, so the
threads only wait.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from mcqa.sandbox import Limits, RunResult, run_program
from mcqa.types import Item

TOOLS = ("execute", "compute")
KEEP_CHARS = 1500  # of a program, its stdout and its stderr, in the record


@dataclass
class ToolRecord:
    tool: str
    letter: str | None = None  # the choice the tool's result names; None when it named none
    status: str = "skipped"  # sandbox status, or "skipped" / "no program" / "no match"
    reason: str = ""  # why no letter: the skip reason, the run's failure, "no choice matches"
    program: str = ""
    language: str = ""
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    value: object = None  # compute: the program's result
    checked: str | None = None  # the letter the verification compared against (the first answer)
    agrees: bool | None = None
    ruled_out: list[str] | None = None  # execute on a completion item: choices that passed fewer examples than the best

    def as_dict(self) -> dict:
        return asdict(self)


def _cut(text: str) -> str:
    return text if len(text) <= KEEP_CHARS else text[:KEEP_CHARS] + f"... [{len(text) - KEEP_CHARS} more chars]"


def _record(tool: str, program: str, language: str, result: RunResult) -> ToolRecord:
    return ToolRecord(
        tool,
        status=result.status,
        reason=result.reason,
        program=_cut(program),
        language=language,
        stdout=_cut(result.stdout),
        stderr=_cut(result.stderr),
        exit_code=result.exit_code,
        seconds=result.seconds,
    )


def run_all(jobs: list[tuple], limits: Limits, workers: int) -> list[RunResult]:
    """(source, language, kwargs) jobs through the sandbox, `workers` at a time, results in order."""

    def one(job):
        source, language, kwargs = job
        return run_program(source, language, limits, **kwargs)

    if workers <= 1 or len(jobs) <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def execute_records(items: list[Item], limits: Limits, workers: int) -> dict[str, ToolRecord]:
    """The code tool for every item of the batch; items without a runnable snippet get a skip record."""
    from mcqa.agent import completion
    from mcqa.agent.execute import choice_from_run, find_program, skip_reason

    records, programs, completions = {}, {}, {}
    for item in items:
        program = find_program(item)
        if program is not None:
            programs[item.id] = program
        elif (found := completion.find_completion(item)) is not None:
            completions[item.id] = found
        else:
            asks = completion.ASKS_COMPLETION.search(item.question)
            reason = completion.skip_reason(item) if asks else skip_reason(item)
            records[item.id] = ToolRecord("execute", status="skipped", reason=reason)
    jobs = [
        (p.source, p.language, {"flags": p.flags, "main_class": p.main_class, "compile_only": p.kind == "compiles"})
        for p in programs.values()
    ]  # a "does it compile" item is only compiled: none of its code runs
    by_id = {it.id: it for it in items}
    checks = {i: [c.program(choice) for choice in by_id[i].choices] for i, c in completions.items()}
    jobs += [(source, "python", {}) for sources in checks.values() for source in sources if source is not None]
    results = iter(run_all(jobs, limits, workers))
    for (item_id, program), result in zip(programs.items(), results, strict=False):
        record = _record("execute", program.source, program.language, result)
        if result.status != "skipped":
            record.letter = choice_from_run(by_id[item_id], program, result)
            if record.letter is None:
                record.reason = record.reason or "no choice matches the run"
        records[item_id] = record
    for item_id, sources in checks.items():
        ran = [(source, next(results)) if source is not None else (None, None) for source in sources]
        records[item_id] = _completion_record(by_id[item_id], len(completions[item_id].examples), ran)
    return records


def _completion_record(item: Item, examples: int, ran: list) -> ToolRecord:
    """One record for the runs of an item's choices: the choices that passed the most examples
    survive; one survivor is the letter, and the others are ruled out (when some passed, not all)."""
    from mcqa.agent.completion import examples_passed

    skipped = next((r for _, r in ran if r is not None and r.status == "skipped"), None)
    if skipped is not None:  # no sandbox or no python here: no choice was judged
        return _record("execute", "", "python", skipped)
    passed = [examples_passed(result.stdout, source) if result is not None else -1 for source, result in ran]
    best = max(passed)
    shown = passed.index(best)  # the record keeps one program: a surviving one
    source, result = ran[shown]
    record = _record("execute", source, "python", result) if result is not None else ToolRecord("execute")
    record.status = "ok" if result is not None else "no program"
    record.seconds = round(sum(r.seconds for _, r in ran if r is not None), 3)
    record.stdout = _cut(
        "\n".join(
            f"{x}: " + (f"passes {n} of {examples} examples" if n >= 0 else "does not parse as the body")
            for x, n in zip(item.letters, passed, strict=True)
        )
    )
    survivors = [x for x, n in zip(item.letters, passed, strict=True) if n == best]
    if best <= 0 or len(survivors) == len(item.letters):
        record.reason = "no choice passes an example" if best <= 0 else "every choice passes as many examples"
        return record
    record.ruled_out = [x for x in item.letters if x not in survivors]
    if len(survivors) == 1:
        record.letter = survivors[0]
    return record


def math_applies(item: Item) -> bool:
    """A math item: at least half its choices (and two) state numbers, so a program's number can name one."""
    from mcqa.agent.compute import choice_values

    numeric = sum(bool(choice_values(c)) for c in item.choices)
    return numeric >= max(2, (len(item.choices) + 1) // 2)


def compute_records(
    items: list[Item], llm, prompts, max_tokens: int, limits: Limits, workers: int
) -> tuple[dict[str, ToolRecord], dict[str, list]]:
    """Program-aided answers for the batch's math items: one generate call, then the sandbox.

    Returns the records and the chats sent (for traces)."""
    from mcqa.agent.compute import closest_choice, program_chat, program_from_reply, result_value, runnable

    records: dict[str, ToolRecord] = {}
    todo = []
    for item in items:
        if math_applies(item):
            todo.append(item)
        else:
            records[item.id] = ToolRecord("compute", status="skipped", reason="choices are not numbers")
    chats = {it.id: program_chat(it, prompts.program, prompts.program_system) for it in todo}
    replies = llm.generate(list(chats.values()), max_tokens=max_tokens, stop=["\n```\n"]) if todo else []
    runnable_items, jobs = [], []
    for item, reply in zip(todo, replies, strict=True):
        code = program_from_reply(reply)
        if code is None:
            records[item.id] = ToolRecord(
                "compute", status="no program", reason="the reply holds no solution()", program=_cut(reply)
            )
            continue
        runnable_items.append((item, code))
        jobs.append((runnable(code), "python", {}))
    for (item, code), result in zip(runnable_items, run_all(jobs, limits, workers), strict=True):
        record = _record("compute", code, "python", result)
        if result.status == "ok":
            record.value = result_value(result.stdout)
            if record.value is None:
                record.reason = "the program printed no result"
            else:
                record.letter, _ = closest_choice(item, record.value)
                if record.letter is None:
                    record.reason = "no choice is close to the result"
        records[item.id] = record
    return records, chats
