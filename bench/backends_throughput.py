"""answer+verify items/s on the same items through every backend, side by side in one run.

Backends: llama.cpp embedded (GGUF), llama.cpp's OpenAI server (openai backend), the vLLM offline
engine and vLLM's OpenAI server (both on the GGUF converted to safetensors). Each runs the agent
graph (answer -> verify -> finalize) over the same items in batches, greedy; the letters of each are
compared with llama.cpp's. Run it where vLLM is installed (`make bench-backends` uses .venv-vllm);
without vLLM the vLLM rows are skipped. Writes bench/results/backends_throughput.json.

Load time is reported apart from solving time; on CPU vLLM runs with `enforce_eager` (no compile).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

from mcqa.agent.solver import AgentSolver
from mcqa.config import LLMConfig, cache_dir, default_threads, load_config
from mcqa.datasets import load_split
from mcqa.llm import load_llm
from mcqa.llm.serve import Server


def solve(llm, cfg, dataset: str, items, batch_size: int) -> tuple[float, list[str | None], dict]:
    solver = AgentSolver(cfg, dataset=dataset, llm=llm)
    before = dict(llm.stats)
    started = time.perf_counter()
    letters = []
    for start in range(0, len(items), batch_size):
        letters += [p.answer for p in solver(items[start : start + batch_size])]
    seconds = time.perf_counter() - started
    tokens = {k: llm.stats[k] - before.get(k, 0) for k in ("prompt_tokens", "cached_tokens", "generated_tokens")}
    return seconds, letters, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="registry name or GGUF path")
    parser.add_argument("--dataset", default="codemmlu_fpt")
    parser.add_argument("--split", default="train")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--dtype", default="float32", help="vLLM dtype on CPU (float32: closest to the GGUF)")
    parser.add_argument("--backends", default="llamacpp,llamacpp-server,vllm,vllm-server")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backends_throughput.json")
    args = parser.parse_args()

    items = load_split(args.dataset, args.split).items[: args.n]
    cfg = load_config(
        **{
            "llm.model": args.model,
            "llm.n_threads": args.threads,
            "llm.n_ctx": 4096,
            "agent.tasks": ["answer"],
            "agent.verify": True,
            "agent.reconsider_rounds": 0,
            "agent.few_shot": 0,
        }
    )
    has_vllm = importlib.util.find_spec("vllm") is not None
    folder = None
    if has_vllm:
        from mcqa.llm.convert import convert

        folder = cache_dir() / "models" / f"{Path(args.model).stem}-vllm-{args.dtype}"
        if not (folder / "mcqa-convert.json").is_file():
            convert(args.model, folder, dtype=args.dtype, overwrite=True)
    vllm_cfg = cfg.llm.model_copy(
        update={"backend": "vllm", "model": str(folder), "dtype": args.dtype, "enforce_eager": True}
    )

    rows, reference = {}, None
    for name in args.backends.split(","):
        if name.startswith("vllm") and not has_vllm:
            print(f"{name:>16}: skipped (vLLM not installed)")
            continue
        started = time.perf_counter()
        server = None
        if name == "llamacpp":
            llm = load_llm(cfg.llm)
        elif name == "vllm":
            llm = load_llm(vllm_cfg)
        else:
            server = Server(
                cfg.llm if name == "llamacpp-server" else vllm_cfg,
                engine="llamacpp" if name == "llamacpp-server" else "vllm",
            ).start()
            llm = load_llm(
                LLMConfig(
                    backend="openai",
                    base_url=server.base_url,
                    model=cfg.llm.model if name == "llamacpp-server" else str(folder),
                )
            )
        load_s = time.perf_counter() - started
        try:
            seconds, letters, tokens = solve(llm, cfg, args.dataset, items, args.batch_size)
        finally:
            llm.close()
            if server:
                server.stop()
        del llm
        gc.collect()
        reference = reference or letters
        rows[name] = {
            "load_s": round(load_s, 1),
            "solve_s": round(seconds, 1),
            "items_per_s": round(len(items) / seconds, 3),
            "prompt_tokens_per_item": round(tokens["prompt_tokens"] / len(items), 1),
            "cached_tokens_per_item": round(tokens["cached_tokens"] / len(items), 1),
            "same_letters_as_llamacpp": sum(a == b for a, b in zip(letters, reference, strict=True)),
            "letters": "".join(x or "-" for x in letters),
        }
        print(
            f"{name:>16}: {rows[name]['items_per_s']:.3f} items/s (solve {seconds:.1f}s, load {load_s:.1f}s), "
            f"{rows[name]['prompt_tokens_per_item']:.0f} prompt tokens/item, "
            f"letters agree with llama.cpp on {rows[name]['same_letters_as_llamacpp']}/{len(items)}"
        )
    result = {
        "model": args.model,
        "dataset": f"{args.dataset}/{args.split}",
        "items": len(items),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "vllm_dtype": args.dtype,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "backends": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
