"""The Python API: what a notebook writes, and what the CLI commands call (one path, so they cannot drift).

    import mcqa
    items = mcqa.load("arc_challenge", split="test", limit=20)
    agent = mcqa.Agent(dataset="arc_challenge", model="smollm2-135m")
    predictions = agent.solve(items)
    run = mcqa.evaluate("arc_challenge", split="test", limit=20, out="runs/arc-zs", model="smollm2-135m")
    cmp = mcqa.compare("runs/arc-zs", "runs/arc-k4")

Settings are given as a config (a YAML path, a dict of sections, or a `Config`) plus overrides by
dotted key (`**{"agent.prompts.verify": "..."}`, or `agent__votes=0` where a keyword is handier);
`model=` and `threads=` are short for `llm.model` and `llm.n_threads`. Errors are exceptions
(`ValueError` and its kinds: `RunError`, `DatasetError`), never an exit.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mcqa.config import Config, build_config, load_config
from mcqa.types import Item, Prediction

__all__ = ["Agent", "Comparison", "Run", "Trace", "compare", "configure", "evaluate", "load", "open_run"]


# --- items -------------------------------------------------------------------------------------------


def _select(items: list[Item], limit: int | None, sample: int | None, seed: int) -> list[Item]:
    """The first `limit` items, or a seeded sample of `sample` kept in split order (a larger sample
    later extends the same subset), or all."""
    from mcqa.eval.bias import seeded_sample

    if sample and limit:
        raise ValueError("sample and limit both choose the items: give one")
    if sample:
        chosen = {it.id for it in seeded_sample(items, sample, seed)}
        return [it for it in items if it.id in chosen]
    return items[:limit] if limit else items


def load_split_items(
    source: str | Path, split: str = "test", data_dir: str | Path | None = None, columns: list[str] | None = None
):
    """(items, the Split read or None for a derived split, where) of a benchmark name or a file.

    `fit` / `validation` (and their `-unseen` forms) are the two sides of a dataset's train split."""
    from mcqa.datasets import DATASETS, Columns, DatasetError, load_file, load_split
    from mcqa.rag.splits import DERIVED_SPLITS, load_items

    root = Path(data_dir) if data_dir is not None else None
    name = str(source)
    if name in DATASETS:
        if split in DERIVED_SPLITS and split not in DATASETS[name].splits:
            try:
                return load_items(name, split, root), None, f"{name}/{split}"
            except DatasetError as exc:
                problem = f"{exc.problem} ({split} is a side of the train split, which {name} lacks)"
                raise DatasetError(exc.path, problem, exc.row) from exc
        loaded = load_split(name, split, root)
    elif Path(name).suffix or os.sep in name:
        loaded = load_file(name, Columns.parse(columns))
    else:
        loaded = load_split(name, split, root)  # an unknown name: its error lists the known ones
    if not loaded.items and not loaded.n_skipped:
        raise DatasetError(loaded.path, "no records (the file holds only a header, or an empty list)")
    return loaded.items, loaded, str(loaded.path)


def load(
    source: str | Path,
    split: str = "test",
    *,
    data_dir: str | Path | None = None,
    columns: list[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """Items of a benchmark (`mcqa data list` names them) or of any file (CSV, JSONL, JSON, Parquet).

    `columns` maps a file's columns as the CLI's `-c` does (`["question=Question", "choices=A,B,C,D",
    "answer=Answer"]`); `data_dir` is the folder holding the dataset folders (default: $MCQA_DATA_DIR,
    else ../shared/data beside the repository); `limit` takes the first N, `sample` a seeded N."""
    items, _, _ = load_split_items(source, split, data_dir, columns)
    return _select(items, limit, sample, seed)


# --- settings ----------------------------------------------------------------------------------------


def configure(config: str | Path | dict | Config | None = None, /, **overrides: Any) -> Config:
    """A Config from a YAML path, a dict of sections or a Config, with dotted overrides applied.

    `configure("my.yaml", **{"agent.prompts.verify": "..."})`, `configure(agent__votes=0, model="x")`.
    An override given as None is ignored; `mcqa.config.NULL` sets a key to None."""
    shorthands = {"model": "llm.model", "threads": "llm.n_threads", "batch_size": "agent.batch_size"}
    dotted = {shorthands.get(k, k.replace("__", ".")): v for k, v in overrides.items()}
    for key in dotted:
        if "." not in key:
            raise ValueError(f"unknown setting {key!r}: give section.key (e.g. agent.votes) or section__key")
    if isinstance(config, Config):
        return build_config(config.model_dump(mode="json"), dotted)
    if isinstance(config, dict):
        return build_config(json.loads(json.dumps(config)), dotted)  # a deep copy: the caller's dict is left alone
    return load_config(Path(config) if config is not None else None, **dotted)


# --- the agent ---------------------------------------------------------------------------------------


@dataclass
class Step:
    """One node of a trace: its name, the prompt it sent (chat messages, where it sent one) and its update."""

    node: str
    update: dict[str, Any]

    @property
    def prompts(self) -> dict[str, Any]:
        return self.update.get("prompts", {})


@dataclass
class Trace:
    """The agent's steps on one item, in order, and its final prediction. Prints as text in a
    terminal, renders as HTML in Jupyter (the same rendering as `mcqa trace`)."""

    item: Item
    steps: list[Step]
    prediction: Prediction | None
    names: dict[str, str] = field(default_factory=dict)

    def _render(self, console) -> None:
        from mcqa.agent.trace import render_step

        for step in self.steps:
            render_step(console, step.node, step.update, self.names)

    def _console(self, html: bool = False):
        from rich.console import Console

        return Console(record=True, width=110, file=io.StringIO(), force_terminal=html, color_system="truecolor")

    def __str__(self) -> str:
        console = self._console()
        self._render(console)
        return console.export_text()

    def _repr_html_(self) -> str:
        console = self._console(html=True)
        self._render(console)
        return console.export_html(inline_styles=True)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [{"node": s.node, "update": s.update} for s in self.steps]


class Agent:
    """The agent graph for one config (and dataset, whose by-dataset defaults it takes): solve items,
    trace one item. Its models load on first use and stay loaded for the next call."""

    def __init__(
        self,
        config: str | Path | dict | Config | None = None,
        *,
        dataset: str | None = None,
        split: str | None = None,
        data_dir: str | Path | None = None,
        llm=None,
        **overrides: Any,
    ):
        from mcqa.datasets import DATASETS

        self.dataset = dataset if dataset in DATASETS else None
        self.split, self.data_dir = split, Path(data_dir) if data_dir is not None else None
        self.config = configure(config, **overrides).for_dataset(self.dataset)
        self._llm = llm
        self._solver: Any = None  # mcqa.agent.solver.AgentSolver, built on first use
        self._tracer: Any = None

    @property
    def solver(self):
        """The batch solver (mcqa.solve.build_solver), built on first use."""
        if self._solver is None:
            from mcqa.solve import build_solver

            self._solver = build_solver(
                self.config, llm=self._llm, dataset=self.dataset, split=self.split, data_root=self.data_dir
            )
        return self._solver

    def solve(self, items: Item | Iterable[Item], retries: int = 2) -> list[Prediction]:
        """One prediction per item, in order; a backend failure becomes a prediction with `error` set."""
        from mcqa.solve import solve_batches

        items = [items] if isinstance(items, Item) else list(items)
        return [p for batch in solve_batches(self.solver, items, self.config.agent.batch_size, retries) for p in batch]

    def trace(self, item: Item) -> Trace:
        """Run the graph on one item and keep every node's update, with the prompts each node sent."""
        from mcqa.agent.solver import AgentSolver
        from mcqa.agent.trace import for_item

        if self._tracer is None:
            shared = self._solver.resources.__dict__.get("llm") if self._solver is not None else None
            self._tracer = AgentSolver(
                self.config,
                dataset=self.dataset,
                split=self.split,
                data_root=self.data_dir,
                llm=self._llm or shared,
                record_prompts=True,
            )
            self._tracer.resources.check(self._tracer.agent.nodes())
        tracer = self._tracer
        state = tracer.initial_state([item])
        steps = [Step("input", for_item(state, item.id))]
        final = None
        for chunk in tracer.graph.stream(state, tracer.thread([item]), stream_mode="updates"):
            for node, update in chunk.items():
                if update:
                    steps.append(Step(node, for_item(update, item.id)))
                    final = update.get("predictions", final)
        prediction = Prediction.model_validate(final[0]) if final else None
        return Trace(item, steps, prediction, misconception_names(self.dataset, self.data_dir))


def misconception_names(dataset: str | None, root: Path | None) -> dict[str, str]:
    """Misconception names for display, when the dataset has a catalogue."""
    from mcqa.datasets import DATASETS, load_misconceptions

    if dataset not in DATASETS or DATASETS[dataset].catalogue is None:
        return {}
    try:
        return {m.id: m.name for m in load_misconceptions(dataset, root)}
    except Exception:  # noqa: BLE001 - names are a nicety; a trace shows ids without them
        return {}


# --- evaluation --------------------------------------------------------------------------------------


class Progress:
    """What `evaluate` reports while it works; the CLI's rich bar and messages implement it. The
    default says nothing (a notebook can pass `progress=True` for a bar on stderr)."""

    def message(self, text: str, warning: bool = False) -> None:  # a line a user should see
        pass

    def start(self, total: int) -> None:  # `total` predictions to make
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass


class BarProgress(Progress):
    """A rich progress bar with rate and ETA, and messages, on stderr (what the CLI shows)."""

    def __init__(self) -> None:
        from mcqa.cli_common import err, progress_bar

        self.err, self.bar, self.started = err, progress_bar(), 0.0
        self.task: Any = None  # the bar's TaskID once started

    def message(self, text: str, warning: bool = False) -> None:
        from rich.markup import escape

        self.err.print(f"[yellow]{escape(text)}[/]" if warning else escape(text), highlight=False, soft_wrap=True)

    def start(self, total: int) -> None:
        self.bar.start()
        self.task, self.started = self.bar.add_task("solving", total=total, rate=""), time.perf_counter()

    def advance(self, n: int) -> None:
        done = self.bar.tasks[self.task].completed + n
        rate = f"{done / max(time.perf_counter() - self.started, 1e-9):.2f} items/s"
        self.bar.update(self.task, advance=n, rate=rate)

    def stop(self) -> None:
        self.bar.stop()


@dataclass
class Run:
    """A run folder's results: its metrics (metrics.json), predictions, items and report paths."""

    path: Path
    metrics: dict[str, Any]
    predictions: dict[str, Prediction]
    items: list[Item] | None = None

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def config(self) -> dict:
        import yaml

        return yaml.safe_load((self.path / "config.yaml").read_text())

    def headline(self) -> list[tuple[str, str]]:
        """The summary rows the CLI prints and the reports open with."""
        from mcqa.eval.report import headline

        return headline(self.metrics)

    def dataframe(self):
        """The predictions as a pandas DataFrame, one row per item (with the item's answer where known)."""
        from mcqa.extras import require

        pd = require("pandas", "reports", "a run as a DataFrame")

        by_id = {it.id: it for it in self.items or []}
        rows = []
        for item_id, p in self.predictions.items():
            item = by_id.get(item_id)
            row = {
                "item_id": item_id,
                "answer": p.answer,
                "gold": item.answer if item else None,
                "correct": p.correct,
                "confidence": (p.option_probs or {}).get(p.answer) if p.answer else None,
                "verification": p.verification,
                "flips": "; ".join(p.flips) if p.flips else "",
                "tool": (p.tool or {}).get("status") if p.tool else None,
                "misconceptions": p.misconceptions,
                "error": p.error,
            }
            rows.append(row)
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        return "\n".join(f"{name}: {value}" for name, value in self.headline())

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(v)}</td></tr>" for n, v in self.headline())
        return f"<b>{html.escape(str(self.path))}</b><table>{rows}</table>"


def open_run(path: str | Path, data_dir: str | Path | None = None) -> Run:
    """A run folder written by `evaluate` or `mcqa eval run`, read without changing it."""
    from mcqa.eval.compare import load_run, load_run_items
    from mcqa.eval.runner import RunError

    path = Path(path)
    meta, predictions = load_run(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.exists():
        raise RunError(f"{path} has no metrics.json yet (an unfinished run: evaluate it again to resume)")
    items = load_run_items(meta, Path(data_dir) if data_dir is not None else None)
    solved = [it for it in items if it.id in predictions] if items is not None else None  # the run's items
    return Run(path, json.loads(metrics_file.read_text()), predictions, solved)


class BackendStopped(RuntimeError):
    """The backend failed on every item of several batches in a row, or the Ray replicas were lost:
    the run stopped, and what it solved is kept for a resume."""


BACKEND_COUNTERS = ("truncated_prompts", "constrained_fallbacks", "failed_requests")


def _stats(stats, solver=None) -> dict:
    """What one invocation did, with the backend's trouble: prompts cut to fit the context, constrained
    generations that fell back to one-hot probabilities, failed requests (the LLM's counters, where it was
    loaded in this process), solver calls that raised and were retried, predictions left with an error."""
    llm = getattr(getattr(solver, "resources", None), "__dict__", {}).get("llm")  # only if it was loaded
    counters = getattr(llm, "stats", {}) or {}
    return {
        "solved": stats.solved,
        "errors": stats.errors,
        "already_done": stats.already_done,
        "seconds": round(stats.seconds, 2),
        "backend": {
            **{name: int(counters.get(name, 0)) for name in BACKEND_COUNTERS},
            "failed_calls": stats.failed_calls,
            "errors": stats.errors,
        },
    }


def _totals(meta: dict) -> dict:
    """Predictions made, seconds spent solving and backend trouble over every invocation of the run (kills aside)."""
    calls = meta.get("invocations", [])
    solved, seconds = sum(c.get("solved", 0) for c in calls), sum(c.get("seconds", 0.0) for c in calls)
    backend: dict[str, int] = {}
    for call in calls:
        for name, n in (call.get("backend") or {}).items():
            backend[name] = backend.get(name, 0) + n
    return {
        "invocations": len(calls),
        "solved": solved,
        "seconds": round(seconds, 2),
        "rate": solved / seconds if seconds else 0.0,
        "backend": backend,
    }


def evaluate(
    dataset: str | Path,
    split: str = "test",
    *,
    out: str | Path,
    config: str | Path | dict | Config | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    columns: list[str] | None = None,
    data_dir: str | Path | None = None,
    permute: int = 0,
    debias: int = 0,
    retries: int = 2,
    retry_errors: bool = False,
    force: bool = False,
    accept_changes: bool = False,
    traces: bool = True,
    ray: str | None = None,
    replicas: int | None = None,
    progress: Progress | bool | None = None,
    argv: list[str] | None = None,
    **overrides: Any,
) -> Run:
    """Solve a split into the run folder `out` (resumable, crash-safe: run it again to go on), then
    write metrics.json, report.md and report.html there, and return the results.

    The folder keeps the resolved config (config.yaml), the items' source and what made the run
    (run.json: version, commit, model checksums), one JSON line per prediction. Resuming with other
    settings, items or model files raises RunError listing the differences, unless `accept_changes`;
    `force` starts over. `permute` asks every item K more times with shuffled choices (answer
    consistency); `debias` estimates the letter prior on N items (PriDe, reported). `ray`/`replicas`
    spread batches over Ray actors (`local`, `auto` or HOST:PORT)."""
    from mcqa.agent.graph import Agent as Graph
    from mcqa.datasets import DATASETS
    from mcqa.eval.bias import permuted_copies, permuted_solver
    from mcqa.eval.ray_pool import ReplicasLost
    from mcqa.eval.report import write_reports
    from mcqa.eval.runner import BackendDown, PredictionLog, RunDir, RunError, RunStats, run_items
    from mcqa.eval.summary import summarize
    from mcqa.models import resolve
    from mcqa.provenance import provenance
    from mcqa.solve import build_solver

    report = BarProgress() if progress is True else progress or Progress()
    dataset = str(dataset)
    registered = dataset in DATASETS
    cfg = configure(config, **overrides).for_dataset(dataset if registered else None)  # as config.yaml keeps it
    all_items, loaded, where = load_split_items(dataset, split, data_dir, columns)
    if loaded is not None and loaded.n_skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in loaded.skipped.most_common())
        first = f" (first: {loaded.examples[0]})" if loaded.examples else ""
        report.message(f"skipped {loaded.n_skipped} row(s) of {loaded.path}: {reasons}{first}", warning=True)
    items = _select(all_items, limit, sample, seed)
    if not items:
        raise RunError(f"{where}: no items to solve")
    if len({it.id for it in items}) != len(items):
        raise RunError(f"{where} has repeated item ids: a run is resumed by id, so ids must be unique")
    source = (
        {"dataset": dataset, "split": split}
        if registered
        else {"file": str(Path(dataset).resolve()), "split": loaded.split, "columns": columns or None}
    )
    data_root = Path(data_dir) if data_dir is not None else None
    run = RunDir(Path(out))
    run.lock()
    try:
        if force:
            run.clear()
        made_by = provenance(cfg, Graph(cfg.agent, None, cfg.agent.tasks).resources_used())  # type: ignore[arg-type]
        changes = run.check(cfg, source, made_by["models"], accept=accept_changes)
        run.start(cfg, source, made_by, changes)
        answers, shuffled = PredictionLog(run.predictions), PredictionLog(run.permutations)
        if changes:
            report.message(f"{run.path}: going on under changed settings: {'; '.join(changes)}", warning=True)
        for log in (answers, shuffled):
            if log.dropped_bytes:
                report.message(
                    f"{log.path}: dropped a torn last line ({log.dropped_bytes} bytes) left by a killed run", True
                )
            if retry_errors and (n := log.drop_errors()):
                report.message(f"retrying {n} item(s) recorded with an error in {log.path.name}")
        shuffled_items, shifted_items = permuted_copies(items, permute, debias, seed)
        copies = list({c.id: c for c in shuffled_items + shifted_items}.values())
        pending = len(answers.pending(items)) + len(shuffled.pending(copies))
        batch = cfg.agent.batch_size
        stats, solver = RunStats(), cast(Any, None)  # the agent solver, or the Ray pool
        argv = list(sys.argv[1:]) if argv is None else argv
        entry = {
            "argv": argv,
            "items": len(items),
            "mcqa_version": made_by["mcqa_version"],
            "commit": made_by["commit"],
        }
        if not pending:
            stats.already_done = len(items) + len(copies)
        else:
            on_ray = ray is not None or replicas is not None
            # on Ray this solver only checks the config here (it loads nothing); the replicas build their own
            solver = cast(Any, build_solver)(
                cfg,
                dataset=dataset if registered else None,
                split=split,
                data_root=data_root,
                traces=run.file("traces.sqlite") if traces and not on_ray else None,
            )
            if cfg.agent.pride and not on_ray:  # a resumed run divides by the prior its first invocation estimated
                solver.agent.debias.keep_prior_in(run.file("pride.json"))
            uses_llm = "llm" in solver.agent.resources_used()
            if uses_llm:  # a wrong model name fails here, not on every item
                resolve(cfg.llm.model, "llm")
            report.message(
                f"{run.path}: {pending} to solve ({len(items) - len(answers.pending(items))} of {len(items)} items "
                f"already done), batches of {batch}, "
                + (f"{cfg.llm.model} on {cfg.llm.n_threads} thread(s)" if uses_llm else "no LLM (retrieval only)")
            )
            if on_ray:
                from mcqa.eval.ray_pool import open_pool

                if traces:
                    report.message(
                        "traces: off on Ray (each replica is its own process); predictions carry no trace id"
                    )
                solver = open_pool(cfg, replicas or 1, ray, dataset if registered else None, split, data_root, retries,
                                   report.message)  # fmt: skip
            report.start(pending)
            try:
                run_items(solver, items, answers, batch, retries, report.advance, stats=stats)
                if copies:
                    on_copies = solver.wrapped(permuted_solver) if on_ray else permuted_solver(solver)
                    run_items(on_copies, copies, shuffled, batch, retries, report.advance, stats=stats)
            except (BackendDown, ReplicasLost) as exc:
                run.record_invocation({**entry, **_stats(stats, solver), "stopped": str(exc)})
                raise BackendStopped(str(exc)) from exc
            finally:
                report.stop()
                if on_ray:
                    solver.close()
        run.record_invocation({**entry, **_stats(stats, solver)})
        info = {
            "dataset": dataset if registered else source["file"],
            "split": split,
            "model": cfg.llm.model,
            "config": str(run.file("config.yaml")),
            "permute": permute,
            "debias": debias,
            "seed": seed,
            "throughput": {**_stats(stats, solver), "rate": stats.rate},
            "all_invocations": _totals(run.read_meta()),
        }
        metrics = summarize(
            items,
            answers.done,
            info,
            [shuffled.done[c.id] for c in shuffled_items if c.id in shuffled.done],
            [shuffled.done[c.id] for c in shifted_items if c.id in shuffled.done],
            debias,
            seed,
        )
        write_reports(run.path, metrics)
        return Run(run.path, metrics, dict(answers.done), items)
    finally:
        run.unlock()


# --- comparison --------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Two runs on their shared items: each metric for A and B with its own 95% interval, and B - A
    with its paired bootstrap interval (`significant`: the interval leaves out zero)."""

    result: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.result["metrics"]

    def row(self, metric: str) -> dict[str, Any]:
        for row in self.rows:
            if row["metric"] == metric:
                return row
        raise KeyError(f"{metric!r} is not among {[r['metric'] for r in self.rows]}")

    def lines(self) -> list[list[str]]:
        """[metric, shared items, A, B, B - A, outside noise?] as text, the CLI's table."""

        def ci(e: dict) -> str:
            return "-" if e["value"] is None else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"

        out = []
        for row in self.rows:
            d = row["difference"]
            verdict = ("yes, B better" if d["value"] > 0 else "yes, B worse") if row["significant"] else "no"
            diff = f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
            out.append([row["metric"], str(row["shared_items"]), ci(row["a"]), ci(row["b"]), diff, verdict])
        return out

    HEADER = ("metric", "shared items", "A", "B", "B - A", "outside noise?")

    def table(self):
        """The comparison as a pandas DataFrame."""
        from mcqa.extras import require

        pd = require("pandas", "reports", "a comparison as a DataFrame")

        return pd.DataFrame(self.lines(), columns=list(self.HEADER))

    def __str__(self) -> str:
        rows = [list(self.HEADER), *self.lines()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        title = f"{self.result['b']} (B) vs {self.result['a']} (A)"
        return "\n".join([title, *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)])

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.lines())
        title = html.escape(f"{self.result['b']} (B) vs {self.result['a']} (A)")
        return f"<b>{title}</b><table><tr>{head}</tr>{body}</table>"


def compare(
    run_a: str | Path | Run, run_b: str | Path | Run, *, data_dir: str | Path | None = None, seed: int = 0
) -> Comparison:
    """Two run folders side by side (what `mcqa eval compare` prints): a paired bootstrap over the
    items both predicted, so the items' shared difficulty cancels out of B - A."""
    from mcqa.eval.compare import compare_runs

    a = run_a.path if isinstance(run_a, Run) else Path(run_a)
    b = run_b.path if isinstance(run_b, Run) else Path(run_b)
    return Comparison(compare_runs(a, b, Path(data_dir) if data_dir is not None else None, seed))
