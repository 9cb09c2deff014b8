"""The graph's state: a whole batch of items and what each node found out about them.

Everything is plain JSON (items as dicts, results keyed by item id) so the SQLite checkpointer can
store every step and a saved trace can be replayed without the model or the mcqa classes. Nodes
return only the keys they change; a batch of one is a step-through trace.
"""

from __future__ import annotations

from typing import Any, TypedDict

from mcqa.types import Item


class AgentState(TypedDict, total=False):
    items: list[dict]  # Item.model_dump() for each item of the batch
    examples: dict[str, list[dict]]  # item id -> few-shot examples (Item dicts)
    answers: dict[str, dict[str, Any]]  # item id -> {"letter": "B", "probs": {"A": .1, ...}}
    first_probs: dict[str, dict[str, float]]  # item id -> the first answer's full distribution
    pending: list[str]  # ids whose current answer still needs verifying
    verification: dict[str, float]  # item id -> P(TRUE), or 1/0: a tool agrees with the answer
    tools: dict[str, dict[str, Any]]  # item id -> the tool's record (mcqa.agent.tools.ToolRecord)
    rejected: dict[str, list[str]]  # item id -> letters rejected by failed verifications
    flips: dict[str, list[str]]  # item id -> ["B->C", ...]
    explanations: dict[str, dict[str, str]]  # item id -> wrong letter -> the LLM's explanation
    candidates: dict[str, dict[str, list[list]]]  # item id -> wrong letter -> [[misconception id, score], ...]
    ranked: dict[str, dict[str, list[list]]]  # the same after the reranker
    prompts: dict[str, dict[str, Any]]  # node -> item id -> the chat it sent (traces only)
    predictions: list[dict]  # Prediction.model_dump() per item, in batch order


def items_of(state: AgentState) -> list[Item]:
    return [Item.model_validate(d) for d in state["items"]]


def examples_of(state: AgentState, item_id: str) -> list[Item]:
    return [Item.model_validate(d) for d in state.get("examples", {}).get(item_id, [])]
