"""The agent as a `Solver` (a batch of items -> one prediction each): what batch runs call.

With a trace database, every step of every batch is checkpointed in SQLite (thread = one batch)
and each prediction carries its `trace_id`, so `mcqa trace show` can replay it later without the
model.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from mcqa.agent.graph import Agent, default_tasks
from mcqa.agent.resources import Resources
from mcqa.config import Config
from mcqa.extras import check_resources
from mcqa.types import Item, Prediction


def open_checkpointer(path: Path):
    """A SqliteSaver on `path` (created with its folder), usable from the thread that runs the graph."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


class AgentSolver:
    def __init__(
        self,
        config: Config,
        dataset: str | None = None,
        split: str | None = None,
        data_root: Path | None = None,
        traces: Path | None = None,
        llm=None,
        record_prompts: bool = False,
        interrupt: bool = False,
    ):
        self.config = config
        self.tasks = config.agent.tasks or default_tasks(dataset)
        self.resources = Resources(config, dataset, data_root, llm=llm, split=split)
        self.agent = Agent(self.resources.agent, self.resources, self.tasks, record_prompts=record_prompts)
        # a library the nodes need that is not installed: one line naming its extra now, not the same
        # ImportError recorded on every item of a run (a given llm is already loaded)
        check_resources(self.agent.resources_used() - ({"llm"} if llm is not None else set()), config.llm.backend)
        self.checkpointer = open_checkpointer(traces) if traces else None
        self.graph = self.agent.build().compile(
            checkpointer=self.checkpointer,
            interrupt_before=[n for n in self.agent.nodes()] if interrupt else None,
        )
        self.run_id = uuid.uuid4().hex[:8]
        self._batches = 0

    def thread(self, items: list[Item]) -> dict:
        self._batches += 1
        return {"configurable": {"thread_id": f"{self.run_id}-{self._batches:05d}"}}

    def initial_state(self, items: list[Item]) -> dict:
        return {"items": [it.model_dump() for it in items]}

    def __call__(self, items: list[Item]) -> list[Prediction]:
        config = self.thread(items)
        final = self.graph.invoke(self.initial_state(items), config)
        trace_id = config["configurable"]["thread_id"] if self.checkpointer else None
        return [Prediction.model_validate({**p, "trace_id": trace_id}) for p in final["predictions"]]
