"""How fast the embedded LLM scores the answer letter: prompt tokens/s and items/s on N real items.

Prints the figures and writes them as JSON (bench/results/llm_throughput.json). Run with
`make bench` or `python bench/llm_throughput.py --model smollm2-135m --n 50`.
The shared system prompt is served from the KV cache; `evaluated tokens/s` counts only the tokens
llama.cpp actually ran, `prompt tokens/s` all tokens the items asked for.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from mcqa.config import LLMConfig, default_threads
from mcqa.datasets import load_split
from mcqa.llm import load_llm
from mcqa.solve import accuracy, batched, zero_shot_solver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dataset", default="codemmlu_fpt")
    parser.add_argument("--split", default="train")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm_throughput.json")
    args = parser.parse_args()

    items = load_split(args.dataset, args.split).items[: args.n]
    started = time.perf_counter()
    llm = load_llm(LLMConfig(model=args.model, n_threads=args.threads))
    load_s = time.perf_counter() - started

    solver = zero_shot_solver(llm)
    batch_seconds, predictions = [], []
    started = time.perf_counter()
    for batch in batched(items, args.batch_size):
        t0 = time.perf_counter()
        predictions += solver(batch)
        batch_seconds.append((time.perf_counter() - t0) / len(batch))
    total_s = time.perf_counter() - started

    stats = llm.stats
    evaluated = stats["prompt_tokens"] - stats["cached_tokens"]
    acc, graded = accuracy(predictions)
    result = {
        "model": args.model,
        "dataset": f"{args.dataset}/{args.split}",
        "items": len(items),
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_s": round(load_s, 2),
        "total_s": round(total_s, 2),
        "items_per_s": round(len(items) / total_s, 3),
        "median_s_per_item_by_batch": round(statistics.median(batch_seconds), 3),
        "prompt_tokens": stats["prompt_tokens"],
        "cached_tokens": stats["cached_tokens"],
        "prompt_tokens_per_s": round(stats["prompt_tokens"] / total_s, 1),
        "evaluated_tokens_per_s": round(evaluated / total_s, 1),
        "mean_prompt_tokens": round(stats["prompt_tokens"] / len(items), 1),
        "accuracy": round(acc, 3),
        "graded": graded,
    }
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
