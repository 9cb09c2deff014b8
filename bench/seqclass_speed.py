"""Seqclass inference speed: the fine-tuned MAP sequence classifier with torch against numpy.

The agent reads a `mcqa train seqclass` model with torch where it is installed and with numpy
(mcqa.finetune.seqclass.NumpySeqClassifier) where it is not, as in a Kaggle bundle. Both score the same
MAP `validation` responses, interleaved (torch, numpy, numpy, torch, ...) so drift on a shared machine
hits both; medians, responses per second, their ratio, and the largest difference in probability.

Prints the figures and writes JSON (bench/results/seqclass_speed.json). Run:
`python bench/seqclass_speed.py --model runs/train/seqclass-map/model [--responses 512] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a `mcqa train seqclass` model folder (OUT/model)")
    parser.add_argument("--responses", type=int, default=512, help="MAP validation responses, drawn at random")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "seqclass_speed.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    import numpy as np

    from mcqa import hub_offline
    from mcqa.finetune.seqclass import load_seqclass
    from mcqa.rag.splits import load_items

    hub_offline()
    items = load_items("map", "validation")
    items = random.Random(0).sample(items, min(args.responses, len(items)))
    models = {backend: load_seqclass(args.model, backend) for backend in ("torch", "numpy")}
    probs = {backend: model.predict(items[:64], batch_size=args.batch_size) for backend, model in models.items()}
    seconds: dict[str, list[float]] = {backend: [] for backend in models}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(models)[::-1]
        for backend in order:
            started = time.perf_counter()
            models[backend].predict(items, batch_size=args.batch_size)
            seconds[backend].append(round(time.perf_counter() - started, 3))
    rate = {backend: round(len(items) / statistics.median(s), 1) for backend, s in seconds.items()}
    result = {
        "model": args.model,
        "responses": len(items),
        "batch_size": args.batch_size,
        "threads": os.environ.get("MCQA_THREADS") or os.cpu_count(),
        "load_before": load_before,
        "seconds": seconds,
        "responses_per_s": rate,
        "numpy_over_torch": round(rate["numpy"] / rate["torch"], 3),
        "max_abs_prob_difference": float(np.abs(probs["torch"] - probs["numpy"]).max()),
        "machine": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
