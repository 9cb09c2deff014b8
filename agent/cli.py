"""`mcqa trace`: step through the agent on one item, or replay a saved trace without the model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mcqa.cli_common import console, fail, open_split

trace_app = typer.Typer(
    help="Step through the agent on one item (pausing before each node), or replay a saved trace.",
    invoke_without_command=True,
)


def _names(dataset: str | None, root: Path | None) -> dict[str, str]:
    from mcqa.api import misconception_names

    return misconception_names(dataset, root)


@trace_app.callback()
def trace(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name (see `mcqa data list`)."),
    item: str | None = typer.Option(None, "--item", "-i", help="The item id (see `mcqa data show`)."),
    split: str = typer.Option("train", "--split", "-s", help="Which split the item is in."),
    model: str | None = typer.Option(None, "--model", "-m", help="LLM registry name or GGUF path."),
    config: Path | None = typer.Option(None, "--config", help="A YAML config (sections: llm, agent)."),
    settings: list[str] | None = typer.Option(
        None,
        "--set",
        help='Override one config key, repeatable: section.key=value, e.g. --set "agent.tools=[execute]".',
    ),
    tasks: str | None = typer.Option(
        None, "--tasks", help="answer, misconceptions or answer,misconceptions (default: by dataset)."
    ),
    no_pause: bool = typer.Option(False, "--no-pause", help="Print the whole trace without waiting."),
    db: Path = typer.Option(Path("runs/traces.sqlite"), "--db", help="SQLite file the steps are checkpointed in."),
    data: Path | None = typer.Option(None, "--data-dir", help="Folder holding the dataset folders."),
) -> None:
    """Run the graph on one item and show every node's update: the prompt, option probabilities,
    the verification, misconception candidates with scores. Enter steps, c continues, q quits."""
    if ctx.invoked_subcommand:
        return
    from mcqa.agent.solver import AgentSolver
    from mcqa.agent.trace import step_through
    from mcqa.config import load_config, parse_settings

    if not dataset or item is None:
        fail("give --dataset and --item (or `mcqa trace show RUN ITEM` to replay a saved trace)")
    loaded = open_split(dataset, split, data)
    chosen = next((it for it in loaded.items if it.id == item), None)
    if chosen is None:
        fail(f"no item {item!r} in {dataset}/{split} (ids look like {', '.join(it.id for it in loaded.items[:3])})")
    try:
        cfg = load_config(
            config,
            **{**parse_settings(settings), "llm.model": model, "agent.tasks": tasks.split(",") if tasks else None},
        )
    except ValueError as exc:
        fail(str(exc))
    solver = AgentSolver(
        cfg, dataset=dataset, split=split, data_root=data, traces=db, record_prompts=True, interrupt=True
    )
    try:
        solver.resources.check(solver.agent.nodes())
    except ValueError as exc:
        fail(str(exc))
    console.print(f"nodes: {' -> '.join(solver.agent.nodes())}  (checkpoints in {db})")
    step_through(solver, chosen, console, pause=not no_pause, names=_names(dataset, data))


@trace_app.command("show")
def show(
    run: str = typer.Argument(..., help="A run folder (runs/NAME), its name, or a traces .sqlite file."),
    item: str = typer.Argument(..., help="The item id."),
    trace_id: str | None = typer.Option(
        None, "--trace", help="The trace (thread) id, if the run has no predictions file."
    ),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Also write the steps to this JSONL file for sharing."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset, to show misconception names."),
) -> None:
    """Replay a saved trace from its checkpoint database, without calling the model."""
    from mcqa.agent.solver import open_checkpointer
    from mcqa.agent.trace import export_jsonl, for_item, render_step, replay, threads_with_item

    path = Path(run)
    if not path.exists() and (Path("runs") / run).exists():
        path = Path("runs") / run
    folder = path if path.is_dir() else path.parent
    db = path if path.is_file() else path / "traces.sqlite"
    if not db.is_file():
        fail(f"no trace database at {db}")
    if trace_id is None and (folder / "predictions.jsonl").is_file():
        for line in (folder / "predictions.jsonl").read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("item_id") == item and record.get("trace_id"):
                trace_id = record["trace_id"]
    saver = open_checkpointer(db)
    if trace_id is None:
        found = threads_with_item(saver, item)
        if not found:
            fail(f"item {item!r} is in no trace of {db}")
        trace_id = found[-1]
    if dataset is None and (folder / "run.json").is_file():  # written by `mcqa eval run`
        dataset = json.loads((folder / "run.json").read_text()).get("source", {}).get("dataset")
    try:
        steps = [{**s, "update": for_item(s["update"], item)} for s in replay(saver, trace_id)]
    except LookupError as exc:
        fail(str(exc))
    names = _names(dataset, None)
    console.print(f"trace {trace_id}: {len(steps)} steps")
    for step in steps:
        render_step(console, step["node"], step["update"], names)
    if jsonl:
        export_jsonl(steps, jsonl)
        console.print(f"written {jsonl}")
