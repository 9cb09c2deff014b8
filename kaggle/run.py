"""Run a bundle over a competition's test file and write submission.csv (what the bundle's script calls).

Everything comes from the bundle folder: the config (paths in it are relative to the bundle), the
model files, and the prebuilt FAISS indexes, which are loaded as they are (no embedding of the
catalogue at run time). If the competition folder's catalogue differs from the one the bundle's
index was built from (say, MAP's full train file has a label the local 80% did not), the index is
rebuilt from the competition's files instead, in memory: that is a few seconds, not a failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mcqa.kaggle.formats import get_task

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
BUNDLE_MANIFEST = "bundle.json"
EMBEDDER_MARK = "bundle:"  # embedder name recorded for a folder shipped inside the bundle (paths differ per machine)


def set_offline() -> None:
    os.environ.update(OFFLINE_ENV)


def read_manifest(bundle: Path) -> dict:
    path = Path(bundle) / BUNDLE_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{bundle} is not an mcqa bundle: no {BUNDLE_MANIFEST} (build one with `mcqa kaggle bundle`)"
        )
    return json.loads(path.read_text())


def bundle_config(bundle: Path, threads: int | None = None):
    """The bundle's config with its bundle-relative paths made absolute, and the thread count of this machine."""
    from mcqa.config import default_threads, load_config

    bundle = Path(bundle).resolve()
    config = load_config(bundle / "config.yaml")
    manifest = read_manifest(bundle)
    rel = manifest.get("relative_paths", {})
    if "llm.model" in rel:
        config.llm.model = str(bundle / rel["llm.model"])
    if "llm.lora" in rel:
        config.llm.lora = str(bundle / rel["llm.lora"])
    if "agent.reranker" in rel:
        config.agent.reranker = str(bundle / rel["agent.reranker"])
    if "agent.classifier" in rel:
        config.agent.classifier = str(bundle / rel["agent.classifier"])
    if "agent.seqclass" in rel:
        config.agent.seqclass = str(bundle / rel["agent.seqclass"])
    if "agent.ngram" in rel:
        config.agent.ngram = str(bundle / rel["agent.ngram"])
    if "agent.embedder" in rel:
        config.agent.embedder = str(bundle / rel["agent.embedder"])
    for n in range(len(config.agent.embedders or [])):
        if f"agent.embedders.{n}" in rel:
            config.agent.embedders[n] = str(bundle / rel[f"agent.embedders.{n}"])
    config.llm.n_threads = threads or default_threads()
    return config


def bundle_embedder(bundle: Path, config, member: int | None = None):
    """The embedder the bundle's indexes were built with, named as their manifests name it: the
    agent's `embedder`, or member N of an ensemble's `embedders`."""
    from mcqa.rag import Embedder

    slot = "agent.embedder" if member is None else f"agent.embedders.{member}"
    embedder = Embedder(config.agent.embedder if member is None else config.agent.embedders[member])
    rel = read_manifest(bundle).get("relative_paths", {})
    if slot in rel:
        embedder.name = EMBEDDER_MARK + rel[slot]
    return embedder


def _bundled_misconceptions(bundle: Path, dataset: str, embedder, input_dir: Path, log, suffix: str = ""):
    """The bundled misconception index (`suffix` -N: of ensemble member N), or one rebuilt from the
    competition's catalogue when that differs."""
    from mcqa.datasets import get_spec
    from mcqa.rag import MisconceptionIndex
    from mcqa.rag.vectors import sha256_of_records

    folder = Path(bundle) / "indexes" / f"misconceptions-{dataset}{suffix}"
    index = MisconceptionIndex.load(folder, embedder)
    try:
        catalogue = get_spec(dataset).catalogue(input_dir)
    except (OSError, ValueError):
        log(f"no catalogue in {input_dir}: using the bundled index as it is ({len(index)} misconceptions)")
        return index
    checksum = sha256_of_records([m.model_dump(mode="json") for m in catalogue])
    if checksum == index.source.get("catalogue_sha256"):
        log(f"bundled misconception index: {len(index)} misconceptions, catalogue checksum matches")
        return index
    log(f"the catalogue in {input_dir} ({len(catalogue)}) differs from the bundled one ({len(index)}): rebuilding")
    return MisconceptionIndex.build(catalogue, embedder, source={"dataset": dataset, "catalogue_sha256": checksum})


def _bundled_labels(bundle: Path, dataset: str, embedder, query_format: str, input_dir: Path, log):
    """The bundled label store, or one rebuilt from the competition's own train file when that differs
    (Kaggle's full train file holds more labelled answers than the copy the bundle was built from)."""
    from mcqa.datasets import get_spec
    from mcqa.rag import LabelStore
    from mcqa.rag.cache import labelled_items
    from mcqa.rag.queries import query_format as format_named

    store = LabelStore.load(Path(bundle) / "indexes" / f"labels-{dataset}", embedder)
    try:
        items, checksum = labelled_items(get_spec(dataset).loader(input_dir, "train").items, query_format)
    except (OSError, ValueError):
        log(f"no train file in {input_dir}: using the bundled label store as it is ({len(store)} labelled answers)")
        return store
    if checksum == store.source.get("items_sha256"):
        log(f"bundled label store: {len(store)} labelled answers, train checksum matches")
        return store
    log(f"the train file in {input_dir} differs from the bundled one: encoding its labelled answers")
    return LabelStore.build(
        items,
        embedder,
        format_named(query_format),
        source={"dataset": dataset, "query_format": query_format, "items_sha256": checksum},
    )


def _bundled_examples(bundle: Path, dataset: str, embedder, log):
    from mcqa.rag import ExampleStore

    store = ExampleStore.load(Path(bundle) / "indexes" / f"examples-{dataset}", embedder)
    log(f"bundled example store: {len(store)} solved items")
    return store


def one_line(text: str) -> str:
    return " ".join(text.split())


def run(
    task_name: str,
    bundle: Path,
    input_dir: Path,
    out: Path,
    threads: int | None = None,
    limit: int | None = None,
    log=print,
    deadline_minutes: float | None = None,
    *,
    clock=time.perf_counter,
) -> dict:
    """Solve the test file of `input_dir` with the bundle and write `out`; returns the run's figures.

    Once the bundle is loaded, `out` is always a valid submission: an all-fallback one is written
    before the first item (so a crash later still leaves one), and the loop never raises for an item:
    a failing batch is retried once, then solved item by item, and an item that still fails gets
    the fallback row (counted in `failed_items`, logged with its error). `deadline_minutes` counts
    from the start of this call (set it below the notebook's limit minus the install time): solving
    stops while there is time left to write (see mcqa.solve.Deadline) and the items left get
    fallback rows (`deadline_fallbacks`). `clock` is the deadline's clock (tests pass one that steps).
    """
    from mcqa.agent.solver import AgentSolver
    from mcqa.datasets import get_spec
    from mcqa.kaggle.submission import submission_rows, write_submission
    from mcqa.solve import Deadline, solve_batches

    set_offline()
    started = time.perf_counter()
    deadline = Deadline(deadline_minutes * 60, clock=clock) if deadline_minutes is not None else None
    task, bundle, input_dir = get_task(task_name), Path(bundle).resolve(), Path(input_dir)
    manifest = read_manifest(bundle)
    if manifest.get("task") != task.name:
        raise ValueError(f"{bundle} is a bundle for {manifest.get('task')!r}, not {task.name!r}")
    if manifest.get("extras") == ["embed"]:
        # the numpy MiniLM the bundle was tested with, not whatever torch the notebook image happens to have
        os.environ.setdefault("MCQA_EMBEDDER_BACKEND", "numpy")
    config = bundle_config(bundle, threads)
    test_file = input_dir / task.test_file
    split = get_spec(task.dataset).loader(input_dir, "test")
    items = split.items[:limit] if limit else split.items
    log(
        f"{task.name}: {len(items)} test item(s) from {test_file}"
        + (f" ({split.n_skipped} skipped: {dict(split.skipped)})" if split.n_skipped else "")
    )

    solver = AgentSolver(config, dataset=task.dataset, split="test", data_root=input_dir.parent)
    resources = solver.resources
    fill: list[str] = []
    used = solver.agent.resources_used()  # what the nodes call: the bundled ones replace what a cache would build
    if "embedder" in used:
        resources.__dict__["embedder"] = bundle_embedder(bundle, config)
    if "misconceptions" in used:
        index = _bundled_misconceptions(bundle, task.dataset, resources.embedder, input_dir, log)
        resources.__dict__["misconceptions"] = index
        fill = [m.id for m in index.misconceptions]
        if "extra_misconceptions" in used:
            resources.__dict__["extra_misconceptions"] = [
                _bundled_misconceptions(
                    bundle, task.dataset, bundle_embedder(bundle, config, n), input_dir, log, f"-{n + 1}"
                )
                for n in range(len(config.agent.embedders))
            ]
        if "hub_penalties" in used:  # the bank is the whole test file, as a batch run's is its split
            resources.__dict__["query_bank"] = resources.query_bank_of(split.items)
        if "labels" in used:
            from mcqa.rag import DEFAULT_QUERY_FORMAT

            resources.__dict__["labels"] = _bundled_labels(
                bundle,
                task.dataset,
                resources.embedder,
                config.agent.query_format or DEFAULT_QUERY_FORMAT,
                input_dir,
                log,
            )
    if "examples" in used:
        resources.__dict__["examples"] = _bundled_examples(bundle, task.dataset, resources.embedder, log)
    if "llm" in used:
        _ = resources.llm  # loaded now: a model that cannot load fails here once, not once per item
    writing = time.perf_counter()
    write_submission(out, task, submission_rows(task, test_file, split.items, [], fill)[0])
    if deadline is not None:
        deadline.write_s = time.perf_counter() - writing
    loaded = time.perf_counter()

    predictions, batch_size = [], config.agent.batch_size
    for solved_batch in solve_batches(
        solver, items, batch_size, retries=1, backoff=0.0, stop=deadline.reached if deadline else None
    ):
        predictions.extend(solved_batch)
        for failed in (p for p in solved_batch if p.error is not None):
            log(f"  item {failed.item_id} failed, it gets the fallback row: {one_line(failed.error)}")
        done = len(predictions)
        if done == len(items) or done % max(batch_size, 50) < batch_size:
            log(f"  {done}/{len(items)} items, {done / max(time.perf_counter() - loaded, 1e-9):.2f} items/s")
    solved = time.perf_counter()
    failed_items = sum(p.error is not None for p in predictions)
    left = len(items) - len(predictions)
    if left:
        log(
            f"deadline: {left} item(s) left to fallback rows, {deadline.left():.0f}s of "
            f"{deadline.seconds:.0f}s left, margin {deadline.margin:.1f}s"
        )
    rows, fallbacks = submission_rows(task, test_file, split.items, predictions, fill)
    write_submission(out, task, rows)
    figures = {
        "task": task.name,
        "items": len(items),
        "rows": len(rows),
        "fallback_rows": fallbacks,
        "failed_items": failed_items,
        "deadline_fallbacks": left,
        "load_s": round(loaded - started, 2),
        "solve_s": round(solved - loaded, 2),
        "items_per_s": round(len(predictions) / max(solved - loaded, 1e-9), 3),
        "total_s": round(time.perf_counter() - started, 2),
        "threads": config.llm.n_threads,
        "llm": Path(config.llm.model).name if "llm" in used else None,
        "submission": str(out),
    }
    log(json.dumps(figures))
    return figures


def main(argv: list[str] | None = None) -> int:
    """`python -m mcqa.kaggle.run --task T --bundle DIR --input DIR --out FILE` (what the bundle script runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mcqa.kaggle.run", description=main.__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path, help="the competition folder (holds the test file)")
    parser.add_argument("--out", default=Path("/kaggle/working/submission.csv"), type=Path)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--limit", type=int, default=None, help="solve only the first N items (rows past them get fallbacks)"
    )
    parser.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="time budget from the start: stop "
        "solving while there is time to write the submission (the items left get fallbacks)",
    )
    args = parser.parse_args(argv)
    run(
        args.task,
        args.bundle,
        args.input,
        args.out,
        args.threads,
        args.limit,
        log=lambda m: print(m, flush=True),
        deadline_minutes=args.deadline_minutes,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
