"""`mcqa eval run` and `mcqa eval compare` (mcqa.rag registers `mcqa eval retrieval` on the same group).

`run` solves a split into a run folder through whatever `mcqa.solve.build_solver` returns (the
agent graph, configured by the config's `agent` section), resumably, then writes metrics.json,
report.md and report.html. `compare` puts two run folders side by side with paired intervals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from mcqa.cli_common import ColumnsOpt, DataDir, console, err, fail, open_split, progress_bar, report_skips

eval_app = typer.Typer(
    help="Evaluate: solve a split into a resumable run folder with metrics and reports "
    "(run); put two runs side by side (compare).",
    no_args_is_help=True,
)


@eval_app.command("run")
def run_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="A dataset name (see `mcqa data list`) or a path to your own file."
    ),
    split: str = typer.Option(
        "test",
        "--split",
        "-s",
        help="Which split; for a dataset with a train split also "
        "fit / validation, its two sides by question (as `mcqa eval retrieval` uses them), or "
        "fit-unseen / validation-unseen, where no validation misconception is in fit.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="The run folder (e.g. runs/NAME): config, predictions.jsonl, "
        "metrics.json, report.md, report.html. Run again with the same --out to resume.",
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        "-n",
        min=1,
        help="Only the first N items of the split (raise it later with the same --out to extend the run).",
    ),
    sample: int | None = typer.Option(
        None,
        "--sample",
        min=1,
        help="A random N items of the split (by --seed), "
        "kept in split order: a fixed subset that covers every subject, where "
        "--limit takes the first N. A larger N later extends the same subset.",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="A YAML config (sections: llm, agent). To resume a run, pass its own RUN/config.yaml."
    ),
    settings: list[str] | None = typer.Option(
        None,
        "--set",
        help="Override one config key, repeatable: "
        "section.key=value, e.g. --set agent.votes=0 (an ablation "
        "of a config without a copy of its file).",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="LLM: a registry name (`mcqa models`) or a GGUF path."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        "-t",
        min=1,
        help="CPU threads (default: $MCQA_THREADS "
        "or all cores; 1 is steadiest on a busy machine). May change on resume.",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Items per solver call (default: the config's agent.batch_size). May change on resume.",
    ),
    permute: int = typer.Option(
        0,
        "--permute",
        min=0,
        help="Also ask every item K more times with its choices "
        "shuffled, and report how often the answer survives (costs K times the run).",
    ),
    debias: int = typer.Option(
        0,
        "--debias",
        min=0,
        help="PriDe: ask every cyclic shift of the choices of N sample "
        "items, estimate the model's letter prior and report accuracy with it divided out "
        "(costs N x (choices - 1) calls; the paper uses 2-5% of the items).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffles, the debias sample, --sample and the bootstrap."),
    retries: int = typer.Option(
        2,
        "--retries",
        min=0,
        help="Retries of a batch whose backend call failed, before "
        "its items are tried alone and failures recorded as errors.",
    ),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Solve again the items recorded with an error."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Start over: delete the run's predictions and reports "
        "(needed to reuse --out with another config or dataset).",
    ),
    traces: bool = typer.Option(
        True,
        "--traces/--no-traces",
        help="Checkpoint every agent step in RUN/traces.sqlite (for `mcqa trace show RUN ITEM`).",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Solve on Ray: `local` starts an "
        "instance on this machine (or joins $RAY_ADDRESS if set); `auto` joins "
        "$RAY_ADDRESS or the cluster `ray start --head` started here; HOST:PORT "
        "joins that one. Batches go to --replicas actors, each with its own model; "
        "only this process writes the run folder.",
    ),
    replicas: int | None = typer.Option(
        None,
        "--replicas",
        min=1,
        help="Ray actors, one model replica each, "
        "holding llm.n_threads CPUs (llama.cpp) or tensor_parallel_size GPUs "
        "(vLLM on a GPU cluster). Default 1; without --ray, a local instance. "
        "May change on resume.",
    ),
    columns: list[str] | None = ColumnsOpt,
    data: Path | None = DataDir,
) -> None:
    """Solve a split into a run folder (resumable, crash-safe), then write metrics.json, report.md, report.html."""
    from mcqa.config import load_config, parse_settings
    from mcqa.datasets import DATASETS, DatasetError
    from mcqa.eval.bias import permuted_copies, permuted_solver, seeded_sample
    from mcqa.eval.ray_pool import ReplicasLost
    from mcqa.eval.report import headline, write_reports
    from mcqa.eval.runner import BackendDown, PredictionLog, RunDir, RunError, RunStats, run_items
    from mcqa.eval.summary import summarize
    from mcqa.models import ModelNotFound, resolve
    from mcqa.rag.splits import DERIVED_SPLITS, load_items
    from mcqa.solve import build_solver

    try:
        cfg = load_config(
            config,
            **{
                **parse_settings(settings),
                "llm.model": model,
                "llm.n_threads": threads,
                "agent.batch_size": batch_size,
            },
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(str(exc))
    registered = dataset in DATASETS
    if registered and split in DERIVED_SPLITS and split not in DATASETS[dataset].splits:
        try:  # fit / validation: the two sides of train (mcqa.rag.splits)
            all_items = load_items(dataset, split, data)
        except DatasetError as exc:
            fail(f"{exc} ({split} is a side of the train split, which {dataset} lacks)")
        where = f"{dataset}/{split}"
    else:
        loaded = open_split(dataset, split, data, columns)
        report_skips(loaded)
        all_items, where = loaded.items, str(loaded.path)
    if sample and limit:
        fail("--sample and --limit both choose the items: give one")
    if sample:  # in split order, so reports and traces read as the file does
        chosen = {it.id for it in seeded_sample(all_items, sample, seed)}
        items = [it for it in all_items if it.id in chosen]
    else:
        items = all_items[:limit] if limit else all_items
    if not items:
        fail(f"{where}: no items to solve")
    if len({it.id for it in items}) != len(items):
        fail(f"{where} has repeated item ids: a run is resumed by id, so ids must be unique")
    source = (
        {"dataset": dataset, "split": split}
        if registered
        else {"file": str(Path(dataset).resolve()), "split": loaded.split, "columns": columns or None}
    )
    run = RunDir(out)
    try:
        run.lock()
        if force:
            run.clear()
        run.check(cfg, source)
        run.start(cfg, source)
        answers, shuffled = PredictionLog(run.predictions), PredictionLog(run.permutations)
    except RunError as exc:
        fail(str(exc))
    for log in (answers, shuffled):
        if log.dropped_bytes:
            err.print(
                f"[yellow]{log.path}: dropped a torn last line ({log.dropped_bytes} bytes) left by a killed run[/]"
            )
        if retry_errors and (n := log.drop_errors()):
            err.print(f"retrying {n} item(s) recorded with an error in {log.path.name}")
    shuffled_items, shifted_items = permuted_copies(items, permute, debias, seed)
    copies = list({c.id: c for c in shuffled_items + shifted_items}.values())
    pending = len(answers.pending(items)) + len(shuffled.pending(copies))
    batch = getattr(getattr(cfg, "agent", None), "batch_size", None) or 8
    stats = RunStats()
    if not pending:
        stats.already_done = len(items) + len(copies)
    else:
        on_ray = ray is not None or replicas is not None
        try:  # on Ray this solver only checks the config here (it loads nothing); the replicas build their own
            solver = build_solver(
                cfg,
                dataset=dataset if registered else None,
                split=split,
                data_root=data,
                traces=run.file("traces.sqlite") if traces and not on_ray else None,
            )
            uses_llm = "llm" in solver.agent.resources_used()
            if uses_llm:  # a wrong model name fails here, not on every item
                resolve(cfg.llm.model, "llm")
        except (ModelNotFound, ValueError) as exc:
            fail(str(exc))
        err.print(
            f"{run.path}: {pending} to solve ({len(items) - len(answers.pending(items))} of {len(items)} items "
            f"already done), batches of {batch}, "
            + (f"{cfg.llm.model} on {cfg.llm.n_threads} thread(s)" if uses_llm else "no LLM (retrieval only)")
        )
        if on_ray:
            solver = _ray_pool(cfg, replicas or 1, ray, dataset if registered else None, split, data, retries, traces)
        started = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task("solving", total=pending, rate="")

            def advance(n: int) -> None:
                done = bar.tasks[task].completed + n
                bar.update(task, advance=n, rate=f"{done / (time.perf_counter() - started):.2f} items/s")

            try:
                run_items(solver, items, answers, batch, retries, advance, stats=stats)
                if copies:
                    on_copies = solver.wrapped(permuted_solver) if on_ray else permuted_solver(solver)
                    run_items(on_copies, copies, shuffled, batch, retries, advance, stats=stats)
            except (BackendDown, ReplicasLost) as exc:
                run.record_invocation({"argv": _argv(), "items": len(items), **_stats(stats), "stopped": str(exc)})
                fail(str(exc), code=1)
            finally:
                if on_ray:
                    solver.close()
    run.record_invocation({"argv": _argv(), "items": len(items), **_stats(stats)})
    info = {
        "dataset": dataset if registered else source["file"],
        "split": split,
        "model": cfg.llm.model,
        "config": str(run.file("config.yaml")),
        "permute": permute,
        "debias": debias,
        "seed": seed,
        "throughput": {**_stats(stats), "rate": stats.rate},
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
    for name, value in headline(metrics):
        console.print(f"{name}: {value}", highlight=False)
    console.print(f"reports: {run.file('report.md')}, {run.file('report.html')}", highlight=False)


def _ray_pool(
    cfg,
    replicas: int,
    address: str | None,
    dataset: str | None,
    split: str,
    data: Path | None,
    retries: int,
    traces: bool,
):
    """The run's replicas on Ray (mcqa.eval.ray_pool), loaded: `--ray local` (or none) starts an instance here."""
    from mcqa.eval.ray_pool import RayPool

    if traces:
        err.print(
            "traces: off on Ray (each replica is its own process, maybe on another machine); predictions "
            "carry no trace id"
        )
    if cfg.agent.pride:
        err.print(
            f"[yellow]agent.pride: each of the {replicas} replica(s) estimates its own letter prior from the "
            "first items it solves[/]"
        )
    try:
        pool = RayPool(cfg, replicas, dataset, split, data, None if address in (None, "local") else address, retries)
    except Exception as exc:  # noqa: BLE001 - Ray not installed, no cluster at the address: one line, no traceback
        fail(f"Ray: {exc}")
    where = (
        "a local Ray instance"
        if pool.started
        else f"the Ray cluster at {pool.address}"
        if pool.address
        else "this process's Ray instance"
    )
    err.print(
        f"{replicas} replica(s) on {where}, each holding "
        + " and ".join(f"{v:g} {k.removeprefix('num_').upper()}" for k, v in pool.resources.items()),
        highlight=False,
    )
    if pool.shortfall:
        err.print(f"[yellow]{pool.shortfall}[/]")
    try:
        pool.ready()
    except RuntimeError as exc:
        pool.close()
        fail(str(exc))
    return pool


def _stats(stats) -> dict:
    return {
        "solved": stats.solved,
        "errors": stats.errors,
        "already_done": stats.already_done,
        "seconds": round(stats.seconds, 2),
    }


def _totals(meta: dict) -> dict:
    """Predictions made and seconds spent solving over every invocation of the run (kills aside)."""
    calls = meta.get("invocations", [])
    solved, seconds = sum(c.get("solved", 0) for c in calls), sum(c.get("seconds", 0.0) for c in calls)
    return {
        "invocations": len(calls),
        "solved": solved,
        "seconds": round(seconds, 2),
        "rate": solved / seconds if seconds else 0.0,
    }


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


@eval_app.command("compare")
def compare_cmd(
    run_a: Path = typer.Argument(..., help="The baseline run folder (runs/A)."),
    run_b: Path = typer.Argument(..., help="The run folder compared with it (runs/B)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON instead of a table."),
    seed: int = typer.Option(0, "--seed", help="Seed of the paired bootstrap."),
    data: Path | None = DataDir,
) -> None:
    """Two runs side by side on their shared items: each metric, B - A, and whether B - A is outside the noise (its paired 95% bootstrap interval leaves out zero)."""
    from rich.table import Table

    from mcqa.eval.compare import compare_runs
    from mcqa.eval.runner import RunError

    try:
        result = compare_runs(run_a, run_b, data, seed)
    except (RunError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        console.print_json(json.dumps(result))
        return
    if not result["metrics"]:
        fail(f"{run_a} and {run_b} share no graded items")
    table = Table(title=f"{run_b} vs {run_a} (95% bootstrap intervals; the difference's is paired)")
    for column in ("metric", "shared items", str(run_a), str(run_b), "B - A", "outside noise?"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in result["metrics"]:
        a, b, d = row["a"], row["b"], row["difference"]
        verdict = (
            ("[green]yes, B better[/]" if d["value"] > 0 else "[red]yes, B worse[/]") if row["significant"] else "no"
        )
        table.add_row(
            row["metric"],
            str(row["shared_items"]),
            _ci(a),
            _ci(b),
            f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]",
            verdict,
        )
    console.print(table)
    if not result["items_loaded"]:
        err.print("[yellow]the runs' items could not be read here: accuracy from the predictions only[/]")
    unshared = {
        row["metric"]: (row["only_a"], row["only_b"]) for row in result["metrics"] if row["only_a"] or row["only_b"]
    }
    for metric, (only_a, only_b) in unshared.items():
        err.print(f"{metric}: {only_a} item(s) only in A and {only_b} only in B are left out", highlight=False)


def _ci(estimate: dict) -> str:
    if estimate["value"] is None:
        return "-"
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"
