"""`mcqa kaggle ...`: build an offline bundle, run one locally, validate a submission."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mcqa.cli_common import err, fail
from mcqa.kaggle.formats import TASKS, get_task

kaggle_app = typer.Typer(
    help="Kaggle code competitions (internet off): offline bundle, submission, validator.", no_args_is_help=True
)
TaskOpt = typer.Option(..., "--task", help=f"The competition: {' | '.join(TASKS)}.")


def _task(name: str):
    try:
        return get_task(name)
    except ValueError as exc:
        fail(str(exc))


@kaggle_app.command("bundle")
def bundle_cmd(
    task: str = TaskOpt,
    out: Path = typer.Option(..., "--out", "-o", help="The folder to write (upload it as a Kaggle dataset)."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A YAML config (sections llm, agent); its model, adapter, embedder and reranker go in the bundle.",
    ),
    data: Path | None = typer.Option(None, "--data-dir", help="Data folder the indexes are built from."),
    dataset_id: str | None = typer.Option(
        None, "--dataset-id", help="USER/SLUG for dataset-metadata.json (default: $KAGGLE_USERNAME/mcqa-TASK)."
    ),
    find_links: list[str] | None = typer.Option(
        None, "--find-links", help="Extra wheel sources for resolving (e.g. the CPU torch index)."
    ),
    no_wheels: bool = typer.Option(False, "--no-wheels", help="Skip the wheels (a quick look at the rest)."),
) -> None:
    """Write a folder that installs and runs offline on Kaggle: wheels, models, indexes, config, notebook, script."""
    from mcqa.kaggle.bundle import build_bundle

    spec = _task(task)
    try:
        manifest = build_bundle(
            spec.name,
            out,
            config,
            data,
            wheels=not no_wheels,
            dataset_id=dataset_id,
            find_links=find_links or [],
            log=lambda m: err.print(m, highlight=False),
        )
    except (OSError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    sizes = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in manifest["sizes"].items())
    typer.echo(f"bundle for {spec.name} in {out}: {sizes}")
    typer.echo(f"upload: kaggle datasets create -p {out} --dir-mode zip")


@kaggle_app.command("run")
def run_cmd(
    task: str = TaskOpt,
    bundle: Path = typer.Option(..., "--bundle", help="A bundle folder (from `mcqa kaggle bundle`)."),
    input_dir: Path = typer.Option(..., "--input", help="The competition folder holding the test file."),
    out: Path = typer.Option(Path("submission.csv"), "--out", "-o"),
    threads: int | None = typer.Option(None, "--threads", "-t", min=1),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, help="Solve only the first N items (the rest get fallback rows)."
    ),
    deadline_minutes: float | None = typer.Option(
        None,
        "--deadline-minutes",
        min=0,
        help="Time budget from the start: stop solving while there is "
        "time to write the submission (twice the slowest batch, plus the write); the rest get fallback rows.",
    ),
) -> None:
    """Run a bundle here, as its script does on Kaggle (mcqa already installed), and write the submission."""
    from mcqa.kaggle.run import run

    spec = _task(task)
    try:
        run(
            spec.name,
            bundle,
            input_dir,
            out,
            threads,
            limit,
            log=lambda m: typer.echo(m, err=True),
            deadline_minutes=deadline_minutes,
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))


@kaggle_app.command("validate")
def validate_cmd(
    submission: Path = typer.Argument(..., help="The submission.csv to check."),
    task: str = TaskOpt,
    test: Path = typer.Option(..., "--test", help="The competition's test file (its rows set the row ids)."),
    sample: Path | None = typer.Option(
        None, "--sample", help="sample_submission.csv (default: the one beside the test file, if any)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check columns, row set, id format and labels per row; exit 1 if anything is wrong."""
    from mcqa.datasets import DatasetError
    from mcqa.kaggle.validate import validate

    spec = _task(task)
    if sample is None and (beside := test.parent / "sample_submission.csv").is_file():
        sample = beside
    for path in (submission, test, sample):
        if path is not None and not path.is_file():
            fail(f"{path}: file not found")
    try:
        problems = validate(spec, submission, test, sample)
    except (DatasetError, ValueError, UnicodeDecodeError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"valid": not problems, "problems": problems}))
    elif problems:
        typer.echo(f"{submission}: NOT a valid {spec.name} submission", err=True)
        for line in problems:
            typer.echo(f"  {line}", err=True)
    else:
        typer.echo(f"{submission}: valid {spec.name} submission")
    raise typer.Exit(1 if problems else 0)
