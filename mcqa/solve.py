"""Solving: the solver a run uses, zero-shot streaming for `mcqa solve`, and prediction files.

The seed of the batch runner: items go through the LLM in batches, predictions stream out one by one
(so a caller can write them as they come), and accuracy is computed from the predictions alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from mcqa.config import Config
from mcqa.llm.base import LLM
from mcqa.types import Item, Prediction


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


Solver = Callable[[list[Item]], list[Prediction]]  # a batch of items -> one prediction each, in order


def build_solver(config: Config, llm: LLM | None = None, dataset: str | None = None, split: str | None = None,
                 data_root: Path | None = None, traces: Path | None = None) -> Solver:
    """The solver a run uses: the agent graph built from `config` (its `agent` section says which
    steps run). `split` is the one being solved (few-shot examples never come from it); `traces`
    names a SQLite file to checkpoint every step in, for `mcqa trace show`. A ValueError here if a
    resource the graph needs is named wrongly (a few-shot source), before any item is tried."""
    from mcqa.agent.solver import AgentSolver

    solver = AgentSolver(config, dataset=dataset, split=split, data_root=data_root, traces=traces, llm=llm)
    solver.resources.check(solver.agent.nodes())
    return solver


def zero_shot_solver(llm: LLM) -> Solver:
    """The agent reduced to its answer node (no verify, no retrieval): the letter with the highest
    option probability, for `mcqa solve` and the benchmarks."""
    from mcqa.agent.solver import AgentSolver
    from mcqa.config import load_config

    return AgentSolver(load_config(**{"agent.tasks": ["answer"], "agent.verify": False}), llm=llm)


def solve(llm: LLM, items: list[Item], batch_size: int = 8,
          on_batch: Callable[[int], None] | None = None) -> Iterator[Prediction]:
    """Zero-shot predictions for `items`, streamed batch by batch; `on_batch(n)` is told after each."""
    solver = zero_shot_solver(llm)
    for batch in batched(items, batch_size):
        yield from solver(batch)
        if on_batch:
            on_batch(len(batch))


def accuracy(predictions: Iterable[Prediction]) -> tuple[float, int]:
    """(accuracy, number of labelled items). Unlabelled items (correct is None) are left out; a
    labelled item that got no answer carries correct=False and counts as wrong."""
    graded = [p.correct for p in predictions if p.correct is not None]
    return (sum(graded) / len(graded) if graded else float("nan")), len(graded)


def write_jsonl(path: Path, predictions: Iterable[Prediction], fsync: bool = False) -> Iterator[Prediction]:
    """Append each prediction to `path` as one flushed JSON line (one write of the whole line, so a
    killed writer tears at most its last line), passing it on. `fsync`: also force the lines to disk
    once the predictions run out (the batch runner does, after each batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for prediction in predictions:
            out.write(prediction.model_dump_json(exclude_defaults=True) + "\n")
            out.flush()
            yield prediction
        if fsync:
            os.fsync(out.fileno())


def read_predictions(path: Path) -> tuple[list[Prediction], int]:
    """The predictions of a JSON-lines file, and the byte length of the part they were read from.

    A torn last line (a writer killed mid-line: no newline yet, or a last line that does not parse)
    is left out, and the length stops before it, so a writer can truncate it away before appending.
    A bad line anywhere else is a ValueError naming the line: that is damage, not a kill.
    """
    data = Path(path).read_bytes()
    end = data.rfind(b"\n") + 1  # bytes after the last newline are a line still being written
    lines = data[:end].split(b"\n")[:-1]
    predictions, offset = [], 0
    for number, line in enumerate(lines, start=1):
        try:
            if line.strip():
                predictions.append(Prediction.model_validate(json.loads(line)))
        except ValueError as exc:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not a prediction: {exc}") from None
            return predictions, offset
        offset += len(line) + 1
    return predictions, end


def read_jsonl(path: Path) -> list[Prediction]:
    """The predictions of a JSON-lines file (a torn last line left out; see `read_predictions`)."""
    return read_predictions(path)[0]
