"""The `mcqa` command: look at datasets, list models, solve a split.

Every command reads data through one setting (`--data-dir`, else MCQA_DATA_DIR, else
../shared/data), prints errors as one clear line (exit code 2 for bad input), and shows progress on
long work.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table

import mcqa
from mcqa.agent.cli import trace_app
from mcqa.cli_common import ColumnsOpt, DataDir, Group, console, err, fail, open_split, progress_bar, report_skips
from mcqa.config import data_dir, load_config
from mcqa.datasets import DATASETS, DatasetError, load_split
from mcqa.eval.cli import eval_app
from mcqa.finetune.cli import train_app
from mcqa.kaggle.cli import kaggle_app
from mcqa.llm.cli import convert_cmd, serve_cmd
from mcqa.models import REGISTRY, ModelNotFound
from mcqa.rag.cli import index_app, mine_cmd, retrieval_cmd

# The command is mcqa's own process: a hub name fails at once. (The command modules above import the
# model libraries only inside their commands, so the flags are set before any of them loads.)
mcqa.hub_offline()

app = typer.Typer(
    help="mcqa: solve multiple-choice benchmarks with an LLM agent and find the misconception behind a wrong answer.",
    no_args_is_help=True,
    add_completion=False,
    cls=Group,  # a missing extra is one line, not a traceback
)
data_app = typer.Typer(help="Inspect the benchmark datasets (counts, skipped rows, items).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(data: Path | None = DataDir) -> None:
    """Every dataset and split: item counts and the rows skipped, with their reasons."""
    root = data or data_dir()
    table = Table(title=f"datasets in {root}")
    for column in ("dataset", "split", "items", "labelled", "skipped", "why skipped"):
        table.add_column(column, justify="right" if column in ("items", "labelled", "skipped") else "left")
    for name, spec in DATASETS.items():
        for split_name in spec.splits:
            try:
                split = load_split(name, split_name, root)
            except DatasetError as exc:
                table.add_row(name, split_name, "-", "-", "-", f"[red]{exc.problem}[/]")
                continue
            labelled = sum(item.answer is not None for item in split.items)
            reasons = "; ".join(f"{n} {r}" for r, n in split.skipped.most_common())
            table.add_row(name, split_name, str(len(split)), str(labelled), str(split.n_skipped), reasons)
    console.print(table)


@data_app.command("show")
def data_show(
    dataset: str = typer.Argument(
        ..., help="A dataset name (see `mcqa data list`) or a path to a CSV/JSONL/Parquet file."
    ),
    split: str = typer.Option("test", "--split", "-s", help="Which split."),
    n: int = typer.Option(3, "--n", "-n", min=1, help="How many items to show."),
    offset: int = typer.Option(0, "--offset", min=0, help="Start at this item."),
    columns: list[str] | None = ColumnsOpt,
    data: Path | None = DataDir,
) -> None:
    """Print a few items of a split as the agent sees them."""
    loaded = open_split(dataset, split, data, columns)
    report_skips(loaded)
    for item in loaded.items[offset : offset + n]:
        table = Table(show_header=False, title=f"{loaded.dataset}/{loaded.split} item {item.id}", title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        table.add_row("question", item.question)
        for letter_, text in zip(item.letters, item.choices, strict=True):
            marks = [m for m, on in (("correct", letter_ == item.answer), ("chosen", letter_ == item.chosen)) if on]
            misconceptions = item.misconceptions.get(letter_)
            suffix = (f"  [green]({', '.join(marks)})[/]" if marks else "") + (
                f"  [magenta]misconception {', '.join(misconceptions)}[/]" if misconceptions else ""
            )
            table.add_row(letter_, text + suffix)
        for key in ("subject", "construct"):
            if getattr(item, key):
                table.add_row(key, getattr(item, key))
        for key, value in item.metadata.items():
            table.add_row(key, str(value)[:300])
        console.print(table)


@app.command("models")
def models() -> None:
    """The embedded models and whether their packages are installed."""
    from mcqa.models import installed

    table = Table(title="model registry (any local GGUF file or model folder works too)")
    for column in ("name", "kind", "what", "installed", "install with"):
        table.add_column(column)
    for name, spec in REGISTRY.items():
        table.add_row(name, spec.kind, spec.description, "yes" if installed(name) else "[red]no[/]", spec.install)
    console.print(table)


@app.command("solve")
def solve_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="A dataset name (see `mcqa data list`) or a path to your own file."
    ),
    split: str = typer.Option("test", "--split", "-s", help="Which split."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Solve only the first N items."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="A registry name (`mcqa models`) or a GGUF path. Default: qwen2.5-coder-1.5b."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        "-t",
        min=1,
        help="CPU threads (default: $MCQA_THREADS or all cores; 1 is steadiest on a busy machine).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Items per backend call."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write predictions here as JSON lines (default: predictions/DATASET-SPLIT.jsonl)."
    ),
    config: Path | None = typer.Option(None, "--config", help="A YAML config (sections: llm)."),
    columns: list[str] | None = ColumnsOpt,
    data: Path | None = DataDir,
) -> None:
    """Answer a split zero-shot (letter by option log-probabilities); write predictions; print accuracy."""
    from mcqa.llm import load_llm
    from mcqa.solve import accuracy, solve, write_jsonl

    try:
        cfg = load_config(config, **{"llm.model": model, "llm.n_threads": threads})
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(str(exc))
    loaded = open_split(dataset, split, data, columns)
    report_skips(loaded)
    items = loaded.items[:limit] if limit else loaded.items
    if not items:
        fail(f"{loaded.path}: no items to solve (every row was skipped)")
    out = out or Path("predictions") / f"{loaded.dataset}-{loaded.split}.jsonl"
    if out.exists():
        out.unlink()  # a fresh run; the resumable runner is `mcqa eval run`
    started = time.perf_counter()
    try:
        llm = load_llm(cfg.llm)
    except ModelNotFound as exc:
        fail(str(exc))
    err.print(
        f"loaded {cfg.llm.model} in {time.perf_counter() - started:.1f}s "
        f"({cfg.llm.n_threads} thread(s)); solving {len(items)} item(s) of {loaded.dataset}/{loaded.split}"
    )
    started = time.perf_counter()
    predictions = []
    with progress_bar() as bar:
        task = bar.add_task("solving", total=len(items), rate="")

        def advance(n: int) -> None:
            done = bar.tasks[task].completed + n
            bar.update(task, advance=n, rate=f"{done / (time.perf_counter() - started):.2f} items/s")

        for prediction in write_jsonl(out, solve(llm, items, batch_size, on_batch=advance)):
            predictions.append(prediction)
    seconds = time.perf_counter() - started
    acc, graded = accuracy(predictions)
    console.print(
        f"{loaded.dataset}/{loaded.split}: {len(predictions)} items in {seconds:.1f}s "
        f"({len(predictions) / seconds:.2f} items/s); predictions in {out}"
    )
    if graded:
        console.print(f"accuracy {acc:.3f} ({sum(bool(p.correct) for p in predictions)}/{graded})")
    else:
        console.print("no labels in this split: no accuracy")


# --- command groups owned by the subpackages (each keeps heavy imports inside its commands; their
# shared helpers live in mcqa.cli_common, so none of them imports this module) --------------------
app.add_typer(trace_app, name="trace")
app.add_typer(index_app, name="index")
app.command("mine")(mine_cmd)
app.add_typer(eval_app, name="eval")
eval_app.command("retrieval")(retrieval_cmd)
app.command("serve")(serve_cmd)
app.command("convert")(convert_cmd)
app.add_typer(kaggle_app, name="kaggle")
app.add_typer(train_app, name="train")


def main() -> None:  # pragma: no cover - the console script calls `app`
    app(prog_name="mcqa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
