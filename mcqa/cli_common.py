"""What every `mcqa` command shares: the consoles, the error line, the data options, the progress bar.

Its own module, apart from `mcqa.cli`, because `mcqa.cli` assembles the app from the command modules
of the subpackages (mcqa.rag.cli, mcqa.eval.cli, ...): if they took these helpers from `mcqa.cli`,
each would import the module that imports it, and none would import on its own. So this module
imports no command module, and every command module (mcqa.cli included) imports from here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mcqa.datasets import DATASETS, Columns, DatasetError, Split, load_file, load_split

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Folder holding the dataset folders (eedi/, map/, ...). "
                       "Default: $MCQA_DATA_DIR, else ../shared/data beside the repository.")
ColumnsOpt = typer.Option(None, "--column", "-c", help="For a file of your own: field=column, repeatable, e.g. "
                          "-c question=Question -c choices=A,B,C,D -c answer=Answer (answer: letter, 0-based index or text).")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as one red line on stderr and exit (2: bad input), instead of a traceback."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def open_split(dataset: str, split: str, root: Optional[Path], columns: Optional[list[str]] = None) -> Split:
    """A registered dataset's split, or a user's file (when `dataset` is a path) through the column mapping."""
    try:
        if dataset not in DATASETS and (Path(dataset).suffix or os.sep in dataset):
            return load_file(dataset, Columns.parse(columns))
        return load_split(dataset, split, root)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))


def report_skips(split: Split) -> None:
    """Say on stderr how many rows of the file were skipped and why, so a short split is never a surprise."""
    if split.n_skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in split.skipped.most_common())
        err.print(f"[yellow]skipped {split.n_skipped} row(s) of {split.path}:[/] {reasons}", highlight=False)


def progress_bar() -> Progress:
    """A bar on stderr with rate and ETA; off when stderr is no terminal (logs, tests) unless $MCQA_PROGRESS."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=err, disable=not err.is_terminal and not os.environ.get("MCQA_PROGRESS"))
