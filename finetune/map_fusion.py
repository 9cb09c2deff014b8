"""Recipe: MAP's fusion weights, chosen on an inner split of `fit`, never on `validation`.

The agent ranks a MAP response's labels by one fused score (mcqa.rag.retrieval.LabelEvidence.rank):

    retrieval cosine + vote_weight * (votes of the k nearest labelled responses above vote_threshold
                                      + classifier_weight * P_head + seqclass_weight * P_seqclass
                                      + ngram_weight * P_ngram)

restricted to the labels its question was given with the same correctness. This recipe solves
`validation-inner` once with the agent itself (label store and head from `fit-inner`, the two sides of
`fit` cut again; a seqclass model trained on `fit-inner`, finetune/configs/seqclass-map-inner.yaml; the
n-gram classifier fitted on `fit-inner`'s label store),
keeps each response's evidence, then scores every weighting of the grid by MAP@3 with the same
ranking code. It writes the grid, each part alone, the best weighting and `agent-map.yaml`: the agent
config with those weights and `seqclass` set to the model trained on the whole of `fit` (what
`mcqa eval run --split validation` then reports once, with `mcqa eval compare`). The best weighting
without the seqclass model is MAP's default (DATASET_DEFAULTS in mcqa.agent.config): it needs no
training beyond what the agent fits at first use.
"""

from __future__ import annotations

import itertools
import time

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mcqa.finetune.common import TrainError, TrainRun

AGENT_FILE = "agent-map.yaml"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("map", description="MAP: its labels are ranked from votes and classifiers.")
    split: str = Field("validation-inner", description="Split the weights are chosen on (the store is its `fit-`).")
    seqclass: str | None = Field(
        None, description="Seqclass model trained on `fit-inner` (its `model` folder); None: the grid has no seqclass."
    )
    final_seqclass: str | None = Field(
        None, description="Seqclass model trained on `fit`, written into agent-map.yaml (default: `seqclass`)."
    )
    k: list[int] = Field([5, 10, 25], description="Neighbours that vote (the run searches the largest).")
    vote_threshold: list[float] = Field([0.5, 0.6, 0.7, 0.8], description="Vote thresholds tried.")
    vote_weight: list[float] = Field([10.0, 30.0], description="Weights of the votes against the cosine.")
    classifier_weight: list[float] = Field([0.0, 3.0, 10.0, 30.0, 100.0], description="Head weights tried (0: none).")
    seqclass_weight: list[float] = Field([0.0, 1.0, 3.0, 10.0, 30.0], description="Seqclass weights tried (0: none).")
    ngram_weight: list[float] = Field(
        [0.0], description="N-gram classifier weights tried (0: none; any other value fits it, `ngram: auto`)."
    )
    batch_size: int = Field(256, ge=1, description="Responses per agent batch.")
    limit: int | None = Field(None, ge=1, description="Use only this many responses of the split (a quick check).")


def map3(ranked: list[list[tuple[str, float]]], gold: list[str]) -> float:
    """MAP@3 with one gold label per response: 1, 1/2 or 1/3 by its place in the top three."""
    from mcqa.eval.metrics import map_at_k

    return map_at_k([[label for label, _ in r] for r in ranked], [[g] for g in gold], 3)


def solve_evidence(config: Config, items, agent_settings: dict) -> list:
    """The LabelEvidence of every response, from one agent run over `items` (votes searched at max k)."""
    import mcqa

    agent = mcqa.Agent(
        {"agent": agent_settings}, dataset=config.dataset, split=config.split, **{"agent.batch_size": config.batch_size}
    )
    graph = agent.solver.agent
    graph.evidence = []
    predictions = agent.solve(items)
    if failed := [p for p in predictions if p.error]:
        raise TrainError(f"{len(failed)} responses failed in the agent, e.g. {failed[0].error}")
    by_id = {item_id: evidence for item_id, _letter, evidence in graph.evidence}
    return [by_id[item.id] for item in items]


def train(config: Config, run: TrainRun) -> dict:
    from mcqa.rag.splits import load_items

    started = time.perf_counter()
    items = [it for it in load_items(config.dataset, config.split) if it.metadata.get("label")]
    if config.limit:
        items = items[:: max(1, len(items) // config.limit)][: config.limit]
    if not items:
        raise TrainError(f"{config.dataset}/{config.split} has no labelled responses")
    uses_ngram = any(config.ngram_weight)
    settings = {
        "votes": max(config.k),
        "classifier": "auto",
        "seqclass": config.seqclass,
        "ngram": "auto" if uses_ngram else "none",
        "label_space": "question",
    }
    clock = time.perf_counter()
    evidence = solve_evidence(config, items, settings)
    solve_s = time.perf_counter() - clock
    gold = [it.metadata["label"] for it in items]

    def score(k, threshold, vote_weight, cw, sw, nw=0.0) -> float:
        return round(map3([e.rank(k, threshold, vote_weight, cw, sw, nw) for e in evidence], gold), 4)

    seq_weights = config.seqclass_weight if config.seqclass else [0.0]
    grid = []
    for k, threshold, vw, cw, sw, nw in itertools.product(
        config.k, config.vote_threshold, config.vote_weight, config.classifier_weight, seq_weights, config.ngram_weight
    ):
        grid.append(
            {
                "k": k,
                "vote_threshold": threshold,
                "vote_weight": vw,
                "classifier_weight": cw,
                "seqclass_weight": sw,
                "ngram_weight": nw,
                "map@3": score(k, threshold, vw, cw, sw, nw),
            }
        )
    grid.sort(key=lambda row: -row["map@3"])
    best = grid[0]
    # what the agent runs without a seqclass model: MAP's by-dataset defaults (mcqa.agent.config)
    without = next(row for row in grid if not row["seqclass_weight"])
    alone = 1e6  # a weight that leaves the catalogue cosine only to break ties
    parts = {  # each part alone (k 0: no votes), then the agent's defaults before this recipe
        "votes": max(
            (r for r in grid if not (r["classifier_weight"] or r["seqclass_weight"] or r["ngram_weight"])),
            key=lambda r: r["map@3"],
        )["map@3"],
        "head": score(0, 0.5, alone, 1.0, 0.0),
        "seqclass": score(0, 0.5, alone, 0.0, 1.0) if config.seqclass else None,
        "ngram": score(0, 0.5, alone, 0.0, 0.0, 1.0) if uses_ngram else None,
        "votes+head (k 25, 0.7, 10, 3)": score(25, 0.7, 10.0, 3.0, 0.0),
    }
    chosen = {key: best[key] for key in ("vote_threshold", "vote_weight", "classifier_weight")}
    agent_config = {"agent": {"votes": best["k"], **chosen, "classifier": "auto", "label_space": "question"}}
    final = config.final_seqclass or config.seqclass
    if final and best["seqclass_weight"]:
        agent_config["agent"].update(seqclass=final, seqclass_weight=best["seqclass_weight"])
    if best["ngram_weight"]:
        agent_config["agent"].update(ngram="auto", ngram_weight=best["ngram_weight"])
    else:  # MAP's default has it on: a weighting chosen without it says so
        agent_config["agent"]["ngram"] = "none"
    path = run.path / AGENT_FILE
    path.write_text(
        f"# mcqa eval run --dataset map --split validation --config {path}\n"
        f"# chosen by `mcqa train map-fusion` on {config.split}: MAP@3 {best['map@3']}\n"
        + yaml.safe_dump(agent_config, sort_keys=False)
    )
    return {
        "recipe": "map-fusion",
        "split": config.split,
        "responses": len(items),
        "best": best,
        "best_without_seqclass": without,
        "parts": parts,
        "agent_config": str(path),
        "solve_s": round(solve_s, 1),
        "grid": grid,
        "total_s": round(time.perf_counter() - started, 1),
    }
