"""Execute coverage: how many CodeMMLU items the code tool can answer by running them, and how well.

For every item of a split: does `find_program` find a program (by language and kind; otherwise the skip
reason), how did its run in the sandbox end (by status), does `choice_from_run` give a letter, and is
it the gold one. Runs are sequential (one compiler or program at a time). Items that ask which body
completes a function are counted apart (`completion`): checked against their docstring's examples,
how many got one survivor (a letter) and how often it was right, how many had choices ruled out and
how often the gold one was among them.

Prints the figures and writes JSON (bench/results/execute_coverage_<split>.json, when bench/results/
exists). `--details FILE` also writes one JSON line per run (program, result, letter, gold), to study
the mapping without running again. Run:
`python bench/execute_coverage.py [--split fit] [--limit N] [--details runs.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from mcqa.agent.execute import choice_from_run, find_program, skip_reason
from mcqa.rag.splits import load_items
from mcqa.sandbox import run_program


def measure(split: str, limit: int | None, details: Path | None) -> dict:
    items = load_items("codemmlu_fpt", split)[:limit]
    skipped, accepted, statuses = Counter(), Counter(), Counter()
    answered, correct = Counter(), Counter()
    by_status = defaultdict(Counter)  # "lang/kind/status" -> answered, correct
    lines = []
    started = time.monotonic()
    for item in items:
        program = find_program(item)
        if program is None:
            skipped[skip_reason(item)] += 1
            continue
        group = f"{program.language}/{program.kind}"
        accepted[group] += 1
        result = run_program(program.source, program.language, flags=program.flags, main_class=program.main_class)
        statuses[f"{group}/{result.status}"] += 1
        letter = choice_from_run(item, program, result)
        key = f"{group}/{result.status}"
        by_status[key]["runs"] += 1
        if letter is not None:
            answered[group] += 1
            by_status[key]["answered"] += 1
            if letter == item.answer:
                correct[group] += 1
                by_status[key]["correct"] += 1
        if details is not None:
            lines.append(
                json.dumps(
                    {
                        "id": item.id,
                        "language": program.language,
                        "kind": program.kind,
                        "repairs": program.repairs,
                        "status": result.status,
                        "exit_code": result.exit_code,
                        "stdout": result.stdout[:1000],
                        "stderr": result.stderr[-1000:],
                        "letter": letter,
                        "gold": item.answer,
                        "choices": item.choices,
                    }
                )
            )
    if details is not None:
        details.write_text("\n".join(lines) + "\n", encoding="utf-8")
    total = lambda counter: sum(counter.values())  # noqa: E731
    return {
        "split": split,
        "items": len(items),
        "accepted": total(accepted),
        "answered": total(answered),
        "correct": total(correct),
        "seconds": round(time.monotonic() - started, 1),
        "accepted_by_group": dict(sorted(accepted.items())),
        "answered_by_group": dict(sorted(answered.items())),
        "correct_by_group": dict(sorted(correct.items())),
        "runs_by_status": dict(sorted(statuses.items())),
        "answers_by_status": {k: dict(v) for k, v in sorted(by_status.items())},
        "skipped": dict(skipped.most_common()),
    }


def completion_coverage(split: str, limit: int | None) -> dict:
    """The examples check (mcqa.agent.completion) on the split's completion items, one run at a time."""
    from mcqa.agent.completion import ASKS_COMPLETION
    from mcqa.agent.tools import execute_records
    from mcqa.sandbox import Limits

    items = [it for it in load_items("codemmlu_fpt", split)[:limit] if ASKS_COMPLETION.search(it.question)]
    started = time.monotonic()
    records = execute_records(items, Limits(), workers=1)
    counts = Counter()
    for item in items:
        record = records[item.id]
        if record.status == "skipped":
            counts[f"skipped: {record.reason}"] += 1
            continue
        counts["checked"] += 1
        if record.letter:
            counts["named"] += 1
            counts["named right"] += record.letter == item.answer
        if record.ruled_out:
            counts["ruled some out"] += 1
            counts["gold ruled out"] += item.answer in record.ruled_out
        elif record.reason:
            counts[record.reason] += 1
    return {"items": len(items), "seconds": round(time.monotonic() - started, 1), **dict(sorted(counts.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="fit", help="a codemmlu_fpt split: fit (default), validation, train")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--details", type=Path, default=None, help="write one JSON line per run here")
    args = parser.parse_args()
    report = measure(args.split, args.limit, args.details)
    report["completion"] = completion_coverage(args.split, args.limit)
    print(
        f"{report['split']}: {report['items']} items, {report['accepted']} with a program, "
        f"{report['answered']} answered by a run, {report['correct']} of them right ({report['seconds']} s)"
    )
    for group, n in report["accepted_by_group"].items():
        answered, right = report["answered_by_group"].get(group, 0), report["correct_by_group"].get(group, 0)
        print(f"  {group:18} programs {n:4}  answered {answered:4}  right {right:4}")
    print("runs by status:")
    for key, counts in report["answers_by_status"].items():
        print(
            f"  {key:34} runs {counts.get('runs', 0):4}  answered {counts.get('answered', 0):4}  "
            f"right {counts.get('correct', 0):4}"
        )
    print("skipped:", ", ".join(f"{reason} {n}" for reason, n in report["skipped"].items()))
    print("completion items (the examples check):", ", ".join(f"{k} {v}" for k, v in report["completion"].items()))
    results = Path(__file__).parent / "results"
    if results.is_dir():
        (results / f"execute_coverage_{args.split}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
