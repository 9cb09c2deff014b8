"""Scale-out on Ray: items/s of the plain runner, and of 1 and 2 Ray replicas, on the same items.

The three modes run the same config through the same batch loop (mcqa.eval.runner.run_items), side
by side in one run, alternating for `--repeats` rounds so machine noise hits them all: `plain` is the
solver in this process; `ray-1` and `ray-2` are a `RayPool` of 1 and 2 actors, each with its own
model on `--threads` threads, on one local Ray instance started here. Each round builds fresh solvers
(cold prompt caches). Model loading and actor start-up are timed apart from solving.
Reports items/s (median over rounds), the Ray path's overhead against the plain runner with one
replica (same work, one more hop per batch), the speed-up of 2 replicas over 1, and how many letters
each mode shares with the plain runner. Writes bench/results/ray_replicas.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray

from mcqa.config import load_config, parse_settings
from mcqa.eval.ray_pool import RayPool
from mcqa.eval.runner import PredictionLog, run_items
from mcqa.rag.splits import load_items
from mcqa.solve import build_solver


def timed_run(solver, items, batch_size: int, folder: Path) -> tuple[float, dict[str, str | None]]:
    """Seconds to solve `items` into a fresh log, and the letters."""
    log = PredictionLog(folder / f"{time.perf_counter_ns()}.jsonl")
    started = time.perf_counter()
    run_items(solver, items, log, batch_size)
    return time.perf_counter() - started, {key: p.answer for key, p in log.done.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--dataset", default="codemmlu_fpt")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (and Ray CPUs) per replica.")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        help="A config override as in `mcqa eval run --set` (default: the answer node alone, "
        "no verify, the plain prompt).",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_replicas.json")
    args = parser.parse_args()

    settings = {
        "agent.tasks": ["answer"],
        "agent.verify": False,
        "agent.permutations": 1,
        **parse_settings(args.settings),
        "llm.model": args.model,
        "llm.n_threads": args.threads,
    }
    cfg = load_config(**settings)
    items = load_items(args.dataset, args.split)[: args.n]  # validation: a side of train, as `eval run` reads it
    started = time.perf_counter()
    ray.init(num_cpus=max(os.cpu_count() or 1, 2 * args.threads), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    print(
        f"{len(items)} items, batches of {args.batch_size}, {args.model} on {args.threads} thread(s) per "
        f"solver, {os.cpu_count()} cores; local Ray instance up in {ray_start:.1f}s"
    )

    modes = ("plain", "ray-1", "ray-2")
    rates = {mode: [] for mode in modes}
    startup = {mode: [] for mode in modes}
    letters: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for mode in modes:
                began = time.perf_counter()
                if mode == "plain":
                    solver = build_solver(cfg, dataset=args.dataset, split=args.split)
                    _ = solver.resources.llm  # load outside the timing, as a replica does before its first batch
                else:
                    solver = RayPool(cfg, int(mode[-1]), args.dataset, args.split)
                    solver.ready()
                startup[mode].append(time.perf_counter() - began)
                try:
                    seconds, letters[mode] = timed_run(solver, items, args.batch_size, Path(tmp))
                finally:
                    if mode != "plain":
                        solver.close()
                rates[mode].append(len(items) / seconds)
                print(
                    f"{mode:>6}: {len(items) / seconds:.3f} items/s ({seconds:.1f}s; start-up {startup[mode][-1]:.1f}s)"
                )
    ray.shutdown()

    median = {mode: statistics.median(values) for mode, values in rates.items()}
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "items": len(items),
        "batch_size": args.batch_size,
        "threads_per_solver": args.threads,
        "cores": os.cpu_count(),
        "repeats": args.repeats,
        "settings": {k: v for k, v in settings.items() if not k.startswith("llm.")},
        "items_per_s_median": {mode: round(rate, 3) for mode, rate in median.items()},
        "startup_s_median": {mode: round(statistics.median(v), 2) for mode, v in startup.items()},
        "ray_instance_start_s": round(ray_start, 2),
        # > 0: the Ray path with one replica is that much slower than the plain runner on the same work
        "ray_overhead_1_replica": round(median["plain"] / median["ray-1"] - 1, 3),
        "speedup_2_over_1_replica": round(median["ray-2"] / median["ray-1"], 3),
        "letters_as_plain": {
            mode: sum(letters[mode].get(k) == v for k, v in letters["plain"].items()) for mode in modes
        },
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
