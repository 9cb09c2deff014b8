"""What each answer mode costs: seconds per item of zero-shot, PriDe, permutation ensembling, cloze scoring and tools.

The modes (the plain answer prompt; the dataset's defaults; `pride: N`; `permutations: K`; `scoring:
cloze | both | blanks`; `tools: [execute]`, which runs code items' snippets in the sandbox; `tools:
[compute]`, where the LLM writes a program for each math item), each on top of the plain prompt, run on
the same items through one loaded model, side by side, alternating for `--repeats` rounds so machine
noise hits them all. Each round uses a fresh agent (PriDe estimates its prior again) and empties the
prefix cache first.
Reports seconds per item (median over rounds), each mode's ratio to zero-shot, and the prompt tokens
per item against those computed (the shifts of one item share its question as a prefix).
Writes bench/results/answer_modes.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from agent_throughput import timed  # noqa: E402  (bench/ is run as a folder of scripts)

from mcqa.agent.solver import AgentSolver
from mcqa.config import load_config
from mcqa.eval.bias import seeded_sample
from mcqa.llm import load_llm
from mcqa.rag.splits import load_items

PLAIN = {"permutations": 1, "tools": [], "scoring": "letter"}  # zero-shot, whatever the dataset's defaults
MODES = {
    "zero-shot": PLAIN,
    "default": {},  # the dataset's own defaults (DATASET_DEFAULTS): what `mcqa eval run` uses
    "pride-8": {**PLAIN, "pride": 8},
    "permutations-2": {**PLAIN, "permutations": 2},
    "permutations-4": {**PLAIN, "permutations": 4},
    "cloze": {**PLAIN, "scoring": "cloze"},
    "letter+cloze": {**PLAIN, "scoring": "both"},
    "blanks": {**PLAIN, "scoring": "blanks"},
    "execute": {**PLAIN, "tools": ["execute"]},
    "compute": {**PLAIN, "tools": ["compute"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dataset", default="codemmlu_fpt")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=list(MODES),
        help="Which modes to time (zero-shot is always timed: the ratios are to it).",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "answer_modes.json")
    args = parser.parse_args()

    base = {"llm.model": args.model, "llm.n_threads": args.threads, "agent.tasks": ["answer"], "agent.verify": False}
    # Drawn across the split by seed, as `eval run --sample N` draws them (the first N share a source and a kind).
    items = seeded_sample(load_items(args.dataset, args.split), args.n)
    llm = load_llm(load_config(**base).llm)
    modes = {m: MODES[m] for m in MODES if m == "zero-shot" or m in args.modes}
    rounds = {mode: [] for mode in modes}
    tokens = {}
    for _ in range(args.repeats):
        for mode, agent in modes.items():
            cfg = load_config(**base, **{f"agent.{k}": v for k, v in agent.items()})
            seconds, delta = timed(AgentSolver(cfg, dataset=args.dataset, llm=llm), items, args.batch_size)
            rounds[mode].append(seconds / len(items))
            tokens[mode] = delta
            print(
                f"{mode:>15}: {seconds / len(items):.2f} s/item  prompt tokens/item "
                f"{delta['prompt_tokens'] / len(items):.0f}, computed/item "
                f"{(delta['prompt_tokens'] - delta['cached_tokens']) / len(items):.0f}"
            )
    median = {m: statistics.median(v) for m, v in rounds.items()}
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "items": len(items),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": llm.config.n_threads,
        "seconds_per_item_median": {m: round(v, 3) for m, v in median.items()},
        "ratio_to_zero_shot": {m: round(v / median["zero-shot"], 2) for m, v in median.items()},
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
