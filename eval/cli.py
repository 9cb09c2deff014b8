"""`mcqa eval run` and `mcqa eval compare` (mcqa.rag registers `mcqa eval retrieval` on the same group).

`run` solves a split into a run folder through whatever `mcqa.solve.build_solver` returns (the
agent graph, configured by the config's `agent` section), resumably, then writes metrics.json,
report.md and report.html. `compare` puts two run folders side by side with paired intervals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from mcqa.cli_common import ColumnsOpt, DataDir, console, err, fail

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
        "fit-unseen / validation-unseen, where no validation misconception is in fit, or "
        "fit-inner / validation-inner, fit cut again (to choose settings without reading validation).",
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
    accept_changes: bool = typer.Option(
        False,
        "--accept-changes",
        help="Resume although the resolved config, the items' source or a model file differs from the run's "
        "(a by-dataset default changed, say): the run goes on under the new settings and run.json records the "
        "differences. Without it such a resume is refused, with the differences listed.",
    ),
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
    from mcqa.api import BackendStopped, BarProgress, evaluate
    from mcqa.config import parse_settings
    from mcqa.datasets import DatasetError
    from mcqa.eval.ray_pool import ReplicasLost
    from mcqa.models import ModelNotFound

    try:
        result = evaluate(
            dataset,
            split,
            out=out,
            config=config,
            limit=limit,
            sample=sample,
            seed=seed,
            columns=columns,
            data_dir=data,
            permute=permute,
            debias=debias,
            retries=retries,
            retry_errors=retry_errors,
            force=force,
            accept_changes=accept_changes,
            traces=traces,
            ray=ray,
            replicas=replicas,
            progress=BarProgress(),
            **{**parse_settings(settings), "model": model, "threads": threads, "batch_size": batch_size},
        )
    except (BackendStopped, ReplicasLost) as exc:
        fail(str(exc), code=1)
    except DatasetError as exc:
        fail(re.sub(r"\s*\n\s*", " ", str(exc)))
    except (ModelNotFound, ValueError, RuntimeError) as exc:  # pydantic's ValidationError is a ValueError
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or dataset}: cannot read: {exc.strerror or exc}")
    for name, value in result.headline():
        console.print(f"{name}: {value}", highlight=False)
    console.print(f"reports: {result.report_md}, {result.report_html}", highlight=False)


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

    from mcqa.api import compare

    try:
        result = compare(run_a, run_b, data_dir=data, seed=seed).result
    except ValueError as exc:  # RunError: not a run folder
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
