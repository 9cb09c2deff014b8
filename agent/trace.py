"""Step-through traces: run one item node by node, or replay a saved run from its SQLite checkpoints.

A replay reads the checkpointer alone: checkpoint k+1 holds the channels that the node scheduled
at checkpoint k (its `branch:to:NODE` channel) wrote, so the node and its update are recovered
without the graph, the model or the index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

BRANCH = "branch:to:"


def replay(saver, thread_id: str) -> list[dict[str, Any]]:
    """[{step, node, update}] of a checkpointed thread, oldest first."""
    checkpoints = sorted(saver.list({"configurable": {"thread_id": thread_id}}), key=lambda t: t.metadata["step"])
    if not checkpoints:
        raise LookupError(f"no trace {thread_id!r} in this database")
    steps, scheduled = [], None
    for tup in checkpoints:
        values = tup.checkpoint["channel_values"]
        if scheduled is None and "items" in values:  # the input checkpoint: show the batch itself
            steps.append({"step": tup.metadata["step"], "node": "input", "update": {"items": values["items"]}})
        elif scheduled is not None:
            changed = tup.checkpoint.get("updated_channels") or list(values)
            update = {k: values[k] for k in changed if not k.startswith(BRANCH) and k in values}
            steps.append({"step": tup.metadata["step"], "node": scheduled, "update": update})
        scheduled = next((k[len(BRANCH) :] for k in values if k.startswith(BRANCH)), None)
    return steps


def threads_with_item(saver, item_id: str) -> list[str]:
    """Thread ids whose batch contains `item_id` (for runs saved without a predictions file)."""
    found = []
    for tup in saver.list(None):
        items = tup.checkpoint["channel_values"].get("items")
        thread = tup.config["configurable"]["thread_id"]
        if items and any(i["id"] == item_id for i in items) and thread not in found:
            found.append(thread)
    return found


def for_item(update: dict[str, Any], item_id: str) -> dict[str, Any]:
    """The part of a batch update that concerns one item."""
    out = {}
    for key, value in update.items():
        if key in ("items", "predictions"):
            value = [v for v in value if v.get("id", v.get("item_id")) == item_id]
        elif key == "pending":
            value = [v for v in value if v == item_id]
        elif key == "prompts":
            value = {
                node: {k: c for k, c in chats.items() if k == item_id or k.startswith(item_id + "/")}
                for node, chats in value.items()
            }
        elif isinstance(value, dict):
            value = {item_id: value[item_id]} if item_id in value else {}
        out[key] = value
    return out


def render_step(console: Console, node: str, update: dict[str, Any], names: dict[str, str] | None = None) -> None:
    """Print what a node changed, in a form a person reads: probabilities, verdicts, candidates."""
    names = names or {}
    console.rule(f"[bold cyan]{node}")
    for key, value in update.items():
        if not value:
            continue
        if key == "items":
            for item in value:
                console.print(f"[bold]item {item['id']}[/]: {item['question'][:500]}")
                for i, choice in enumerate(item["choices"]):
                    letter = chr(65 + i)
                    mark = " [green](correct)[/]" if letter == item.get("answer") else ""
                    console.print(f"  {letter}. {choice[:200]}{mark}")
        elif key == "prompts":
            for chats in value.values():
                for ref, chat in chats.items():
                    text = chat if isinstance(chat, str) else chat[-1]["content"]
                    console.print(
                        f"[dim]prompt {ref} ({len(chat) if not isinstance(chat, str) else 1} turns), "
                        f"last turn:[/]\n{text[:800]}"
                    )
        elif key == "answers":
            for answer in value.values():
                table = Table("option", "probability", title="answer")
                for letter, p in answer["probs"].items():
                    style = "bold green" if letter == answer["letter"] else ""
                    table.add_row(letter, f"{p:.3f}", style=style)
                console.print(table)
        elif key == "verification":
            tools = update.get("tools", {})
            for item_id, p in value.items():
                if (tools.get(item_id) or {}).get("letter") or (tools.get(item_id) or {}).get("ruled_out"):
                    console.print(
                        f"verification: tool `{tools[item_id]['tool']}` "
                        f"{'agrees' if p >= 0.5 else 'disagrees'} with the answer"
                    )
                else:
                    console.print(f"verification: P(TRUE) = {p:.3f} -> {'passed' if p >= 0.5 else 'failed'}")
        elif key == "tools":
            for record in value.values():
                render_tool(console, record)
        elif key in ("candidates", "ranked"):
            for by_letter in value.values():
                for letter, hits in by_letter.items():
                    table = Table("rank", "id", "score", "misconception", title=f"{key} for wrong answer {letter}")
                    for rank, (mid, score) in enumerate(hits[:10], start=1):
                        table.add_row(str(rank), str(mid), f"{score:.3f}", names.get(str(mid), "")[:90])
                    console.print(table)
        elif key == "predictions":
            for p in value:
                verdict = "" if p.get("correct") is None else (" [green]right[/]" if p["correct"] else " [red]wrong[/]")
                console.print(
                    f"[bold]final answer[/]: {p.get('answer')}{verdict}"
                    + (f"  flips: {', '.join(p['flips'])}" if p.get("flips") else "")
                )
                for letter, ids in p.get("misconceptions", {}).items():
                    console.print(f"  {letter}: top misconceptions {', '.join(map(str, ids[:5]))} ...")
        else:
            console.print(f"{key}: {json.dumps(value, ensure_ascii=False)[:600]}")


def render_tool(console: Console, record: dict) -> None:
    """What a tool ran and what came of it: the program, its status, exit code, time, output, and the letter."""
    if record.get("status") == "skipped":
        console.print(f"tool `{record['tool']}`: skipped ({record.get('reason')})")
        return
    console.print(
        f"tool `{record['tool']}` ({record.get('language') or '?'}): {record['status']}, exit "
        f"{record.get('exit_code')}, {record.get('seconds', 0):.2f}s -> "
        + (
            f"[bold]{record['letter']}[/]"
            if record.get("letter")
            else ""
            if record.get("ruled_out")
            else f"no choice ({escape(record.get('reason') or '')})"
        )
        + (f" (ruled out: {', '.join(record['ruled_out'])})" if record.get("ruled_out") else "")
        + ("" if record.get("agrees") is None else f"; agrees with {record['checked']}: {record['agrees']}")
    )
    console.print(f"[dim]program:[/]\n{escape(record.get('program', '')[:1500])}", highlight=False)
    for stream in ("stdout", "stderr"):
        if record.get(stream):
            console.print(f"[dim]{stream}:[/] {escape(record[stream][:600])}", highlight=False)


def step_through(
    solver,
    item,
    console: Console,
    pause: bool = True,
    ask: Callable[[str], str] = input,
    names: dict[str, str] | None = None,
) -> dict | None:
    """Run the graph on one item, pausing before each node: Enter steps, c continues, q quits.

    Returns the final prediction (a dict), or None if the user quit. The solver must be built with
    `interrupt=True` and a checkpointer.
    """
    config = solver.thread([item])
    console.print(f"trace id: [bold]{config['configurable']['thread_id']}[/]")
    stream_input: Any = solver.initial_state([item])
    render_step(console, "input", for_item(stream_input, item.id), names)
    while True:
        for chunk in solver.graph.stream(stream_input, config, stream_mode="updates"):
            for node, update in chunk.items():
                if node != "__interrupt__" and update:
                    render_step(console, node, for_item(update, item.id), names)
        snapshot = solver.graph.get_state(config)
        if not snapshot.next:
            predictions = snapshot.values.get("predictions") or [None]
            return predictions[0]
        if pause:
            key = ask(f"next: {snapshot.next[0]}  [Enter] step, c continue, q quit > ").strip().lower()
            if key == "q":
                return None
            if key == "c":
                pause = False
        stream_input = None


def export_jsonl(steps: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for step in steps:
            out.write(json.dumps(step, ensure_ascii=False) + "\n")
