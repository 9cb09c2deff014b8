"""What every `mcqa` command shares: the consoles, the error line, the data options, the progress bar.

Its own module, apart from `mcqa.cli`, because `mcqa.cli` assembles the app from the command modules
of the subpackages (mcqa.rag.cli, mcqa.eval.cli, ...): if they took these helpers from `mcqa.cli`,
each would import the module that imports it, and none would import on its own. So this module
imports no command module, and every command module (mcqa.cli included) imports from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from mcqa.datasets import DATASETS, Columns, DatasetError, Split, load_file, load_split
from mcqa.extras import MissingExtra

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(
    None,
    "--data-dir",
    help="Folder holding the dataset folders (eedi/, map/, ...). "
    "Default: $MCQA_DATA_DIR, else ../shared/data beside the repository.",
)
ColumnsOpt = typer.Option(
    None,
    "--column",
    "-c",
    help="For a file of your own: field=column, repeatable, e.g. "
    "-c question=Question -c choices=A,B,C,D -c answer=Answer (answer: letter, 0-based index or text).",
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as one red line on stderr and exit (2: bad input), instead of a traceback.

    The message is printed as it is (a '[/]' in a file name or a column is text, not markup) and not
    wrapped to the terminal's width, so a long path stays on one line that a script can grep.
    """
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class Group(TyperGroup):
    """The `mcqa` app's top group (typer.Typer(cls=Group)): every command runs inside its `invoke`, so a
    library of an extra that is not installed (mcqa.extras.MissingExtra), wherever a command reaches for
    it, is the one line `fail` prints ("... needs the 'llm' extra: pip install 'mcqa-agent[llm]'"), not
    a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MissingExtra as exc:
            fail(str(exc))


def open_split(dataset: str, split: str, root: Path | None, columns: list[str] | None = None) -> Split:
    """A registered dataset's split, or a user's file (when `dataset` is a path) through the column mapping.

    A file that cannot be read, or that holds no record at all (only a header, an empty list), is one
    error line naming the file; rows that could not be used are the split's counted skips.
    """
    try:
        if dataset not in DATASETS and (Path(dataset).suffix or os.sep in dataset):
            loaded = load_file(dataset, Columns.parse(columns))
        else:
            loaded = load_split(dataset, split, root)
    except (DatasetError, ValueError) as exc:
        fail(re.sub(r"\s*\n\s*", " ", str(exc)))
    except OSError as exc:
        fail(f"{exc.filename or dataset}: cannot read: {exc.strerror or exc}")
    if not loaded.items and not loaded.n_skipped:
        fail(f"{loaded.path}: no records (the file holds only a header, or an empty list)")
    return loaded


def report_skips(split: Split) -> None:
    """Say on stderr how many rows of the file were skipped and why, so a short split is never a surprise."""
    if split.n_skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in split.skipped.most_common())
        first = f" (first: {split.examples[0]})" if split.examples else ""
        err.print(
            f"[yellow]skipped {split.n_skipped} row(s) of {escape(str(split.path))}:[/] {escape(reasons + first)}",
            highlight=False,
            soft_wrap=True,
        )


def progress_bar() -> Progress:
    """A bar on stderr with rate and ETA; off when stderr is no terminal (logs, tests) unless $MCQA_PROGRESS."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal and not os.environ.get("MCQA_PROGRESS"),
    )
