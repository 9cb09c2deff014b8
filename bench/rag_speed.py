"""RAG speed: Embedder.encode against raw sentence-transformers `encode`, and misconception search.

1. Encoding: the same query texts (real Eedi wrong answers, default query format) through a raw
   `SentenceTransformer.encode(normalize_embeddings=True)` and through `Embedder.encode`, interleaved
   (raw, ours, ours, raw, ...) so drift on a shared machine hits both; medians and their ratio.
   Goal: the Embedder within 10% of raw (ratio >= 0.9).
2. Search: 1,000 queries against the Eedi misconception index (2,587 entries), k=25: FAISS search
   alone (median of repeats; goal under 50 ms) and end to end (encode + search), to show that
   encoding dominates.

Prints the figures and writes JSON (bench/results/rag_speed.json). Run:
`python bench/rag_speed.py [--texts 256] [--repeats 5] [--queries 1000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from mcqa.config import default_threads
from mcqa.datasets import load_split
from mcqa.models import resolve
from mcqa.rag import DEFAULT_QUERY_FORMAT, QUERY_FORMATS, Embedder, labelled_pairs, load_or_build_misconception_index


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def encoding(embedder: Embedder, texts: list[str], repeats: int) -> dict:
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(resolve(embedder.name, kind="embedder")), device="cpu")

    def run_raw():
        raw.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def run_ours():
        embedder.encode(texts, kind="query")

    run_raw(), run_ours()  # warm-up: first calls allocate
    raw_s, ours_s = [], []
    for repeat in range(repeats):
        pair = [(raw_s, run_raw), (ours_s, run_ours)]
        for seconds, fn in pair if repeat % 2 == 0 else pair[::-1]:
            seconds.append(timed(fn))
    raw_tps, ours_tps = len(texts) / statistics.median(raw_s), len(texts) / statistics.median(ours_s)
    return {
        "texts": len(texts),
        "repeats": repeats,
        "batch_size": embedder.batch_size,
        "raw_s": [round(s, 3) for s in raw_s],
        "embedder_s": [round(s, 3) for s in ours_s],
        "raw_texts_per_s": round(raw_tps, 2),
        "embedder_texts_per_s": round(ours_tps, 2),
        "ratio_embedder_to_raw": round(ours_tps / raw_tps, 3),
    }


def search(embedder: Embedder, queries: list[str], k: int, repeats: int) -> dict:
    import faiss

    index = load_or_build_misconception_index("eedi", embedder, progress=True)
    started = time.perf_counter()
    vectors = embedder.encode(queries, kind="query")
    encode_s = time.perf_counter() - started
    result = {"queries": len(queries), "k": k, "index_size": len(index), "encode_s": round(encode_s, 2)}
    for threads in sorted({1, default_threads()}):
        faiss.omp_set_num_threads(threads)
        index.search_vectors(vectors, k)  # warm-up
        ms = [timed(lambda: index.search_vectors(vectors, k)) * 1000 for _ in range(repeats)]
        result[f"search_ms_median_{threads}_thread"] = round(statistics.median(ms), 2)
        result[f"search_ms_min_{threads}_thread"] = round(min(ms), 2)
    faiss.omp_set_num_threads(default_threads())
    end_to_end_s = timed(lambda: index.search(queries, k))
    result["end_to_end_s"] = round(end_to_end_s, 2)
    result["search_share_of_end_to_end"] = round(
        result[f"search_ms_median_{default_threads()}_thread"] / 1000 / end_to_end_s, 4
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", help="Embedder registry name or local folder.")
    parser.add_argument("--texts", type=int, default=256, help="Texts per encoding run.")
    parser.add_argument("--repeats", type=int, default=5, help="Interleaved encoding runs of each.")
    parser.add_argument("--queries", type=int, default=1000, help="Queries against the misconception index.")
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--search-repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rag_speed.json")
    args = parser.parse_args()

    build = QUERY_FORMATS[DEFAULT_QUERY_FORMAT]
    pairs = list(labelled_pairs(load_split("eedi", "train").items))
    texts = [build(item, letter) for item, letter, _ in pairs]
    load_before = os.getloadavg()
    started = time.perf_counter()
    embedder = Embedder(args.model)
    embedder.model  # noqa: B018 - load now, so neither side pays for it
    result = {
        "embedder": embedder.name,
        "query_format": DEFAULT_QUERY_FORMAT,
        "threads": default_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_s": round(time.perf_counter() - started, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "encoding": encoding(embedder, texts[: args.texts], args.repeats),
        "search": search(
            embedder, (texts * (args.queries // len(texts) + 1))[: args.queries], args.k, args.search_repeats
        ),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
