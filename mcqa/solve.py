"""Solving: the solver a run uses, the one batch loop, zero-shot streaming for `mcqa solve`, and prediction files.

Items go through the solver in batches, predictions stream out batch by batch (so a caller can write
them as they come), and accuracy is computed from the predictions alone. `solve_batches` is the loop
the eval runner and the Kaggle run share: a failing batch is retried, then solved item by item, and
an item that still fails becomes a Prediction with `error` set, never an exception that ends a run.
"""

from __future__ import annotations

import json
import os
import time
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
ERROR_CHARS = 500  # an error prediction keeps this much of the message


# --- the batch loop: retries, then item by item, then an error prediction ---------------------------


def error_prediction(item: Item, exc: BaseException) -> Prediction:
    message = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    return Prediction(item_id=item.id, error=message, correct=None if item.answer is None else False)


def _checked(batch: list[Item], predictions: list[Prediction]) -> list[Prediction]:
    """The solver's predictions, after checking they are one per item, in order."""
    ids = [p.item_id for p in predictions]
    if ids != [it.id for it in batch]:
        raise ValueError(f"solver returned predictions for {ids[:3]}... instead of one per item in order")
    return predictions


def solve_with_retries(
    solver: Solver,
    batch: list[Item],
    retries: int = 2,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Prediction]:
    """One prediction per item, never an exception (KeyboardInterrupt aside).

    The batch is tried `retries` + 1 times (waiting `backoff`, then twice that, ...); then each item
    alone once; an item that still fails gets an error prediction.
    """
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        try:
            return _checked(batch, solver(batch))
        except Exception as exc:  # noqa: BLE001 - any backend failure is recorded, never fatal
            last = exc
    if len(batch) == 1:
        return [error_prediction(batch[0], last)]
    return [p for item in batch for p in solve_with_retries(solver, [item], 0, backoff, sleep)]


def solve_batches(
    solver: Solver,
    items: Iterable[Item],
    batch_size: int,
    retries: int = 2,
    backoff: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[list[Prediction]]:
    """Each batch's predictions in turn (see `solve_with_retries`: one per item, never an exception).

    `stop()` is asked before each batch (so the time between two asks is one batch); once it says
    yes, the loop ends and the items not yet yielded are left unsolved, for the caller to count.
    Being a generator, the loop also ends wherever the caller stops iterating.

    A solver with a `map_batches(batches, retries, backoff)` method solves several batches at once
    (mcqa.eval.ray_pool.RayPool: replicas on a Ray cluster, each running `solve_with_retries`): it is
    handed the batches and yields each one's predictions as it completes, so not in item order.
    """
    batches = batched(items, batch_size)
    if stop is not None:
        batches = _until(stop, batches)
    if (map_batches := getattr(solver, "map_batches", None)) is not None:
        yield from map_batches(batches, retries, backoff)
        return
    for batch in batches:
        yield solve_with_retries(solver, batch, retries, backoff)


def _until(stop: Callable[[], bool], batches: Iterator[list[Item]]) -> Iterator[list[Item]]:
    for batch in batches:
        if stop():
            return
        yield batch


class Deadline:
    """A time budget for a batch loop (its `stop`): stop while there is still time to write the output.

    `reached()` is asked before each batch and says yes when the time left is shorter than a safety
    margin: twice the slowest batch so far (the next batch may be as slow, and slower on a busy
    machine) plus `write_s`, what writing the output takes (the Kaggle run measures it on the
    fallback submission it writes before solving). The budget counts from when the Deadline is made.
    `clock` is a monotonic clock in seconds (tests pass one that steps).
    """

    def __init__(self, seconds: float, write_s: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self.seconds, self.write_s, self.clock = seconds, write_s, clock
        self.start = clock()
        self.slowest = 0.0
        self._asked: float | None = None  # when `reached` was last asked, i.e. when the last batch began

    @property
    def margin(self) -> float:
        return 2 * self.slowest + self.write_s

    def left(self, now: float | None = None) -> float:
        return self.seconds - ((self.clock() if now is None else now) - self.start)

    def reached(self) -> bool:
        now = self.clock()
        if self._asked is not None:
            self.slowest = max(self.slowest, now - self._asked)
        self._asked = now
        return self.left(now) < self.margin


def build_solver(
    config: Config,
    llm: LLM | None = None,
    dataset: str | None = None,
    split: str | None = None,
    data_root: Path | None = None,
    traces: Path | None = None,
) -> Solver:
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


def solve(
    llm: LLM, items: list[Item], batch_size: int = 8, on_batch: Callable[[int], None] | None = None
) -> Iterator[Prediction]:
    """Zero-shot predictions for `items`, streamed batch by batch through the one batch loop
    (`solve_batches`: an item the backend fails on becomes a prediction with `error`, not the end of
    the run); `on_batch(n)` is told after each."""
    for predictions in solve_batches(zero_shot_solver(llm), items, batch_size):
        yield from predictions
        if on_batch:
            on_batch(len(predictions))


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
