"""Batch solving against a naive one-item-at-a-time loop: answer + verify on the same items, same model.

Both modes run the same compiled graph (answer -> verify -> finalize, no reconsider) through the
same backend, side by side in one process, alternating for `--repeats` rounds so machine noise hits
both. Reports items/s (median over rounds), their ratio, and tokens computed per item against the
tokens in the prompts (what the prefix cache and the saved answer states spare).
Writes bench/results/agent_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mcqa.agent.solver import AgentSolver
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.llm import load_llm


def timed(solver, items, batch_size: int) -> tuple[float, dict]:
    llm = solver.resources.llm
    llm.llm.reset()
    if llm.states is not None:
        llm.states.saved.clear()
        llm.states.size = 0
    before = dict(llm.stats)
    started = time.perf_counter()
    for start in range(0, len(items), batch_size):
        solver(items[start : start + batch_size])
    seconds = time.perf_counter() - started
    delta = {k: llm.stats[k] - before.get(k, 0) for k in ("prompt_tokens", "cached_tokens", "restored_states")}
    return seconds, delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dataset", default="codemmlu_fpt")
    parser.add_argument("--split", default="train")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "agent_throughput.json")
    args = parser.parse_args()

    cfg = load_config(
        **{
            "llm.model": args.model,
            "llm.n_threads": args.threads,
            "agent.tasks": ["answer"],
            "agent.verify": True,
            "agent.reconsider_rounds": 0,
        }
    )
    items = load_split(args.dataset, args.split).items[: args.n]
    llm = load_llm(cfg.llm)
    solver = AgentSolver(cfg, dataset=args.dataset, llm=llm)
    rounds = {"batch": [], "one_at_a_time": []}
    tokens = {}
    for _ in range(args.repeats):
        for mode, size in (("batch", args.batch_size), ("one_at_a_time", 1)):
            seconds, delta = timed(solver, items, size)
            rounds[mode].append(len(items) / seconds)
            tokens[mode] = delta
            print(
                f"{mode:>14}: {len(items) / seconds:.3f} items/s ({seconds:.1f}s)  "
                f"prompt tokens/item {delta['prompt_tokens'] / len(items):.0f}, computed/item "
                f"{(delta['prompt_tokens'] - delta['cached_tokens']) / len(items):.0f}, "
                f"restored states {delta['restored_states']}"
            )
    result = {
        "model": args.model,
        "items": len(items),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": cfg.llm.n_threads,
        "items_per_s_median": {m: round(statistics.median(v), 3) for m, v in rounds.items()},
        "ratio_batch_over_loop": round(
            statistics.median(rounds["batch"]) / statistics.median(rounds["one_at_a_time"]), 3
        ),
        "tokens_per_item": {
            m: {
                "in_prompts": round(t["prompt_tokens"] / len(items), 1),
                "computed": round((t["prompt_tokens"] - t["cached_tokens"]) / len(items), 1),
            }
            for m, t in tokens.items()
        },
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
