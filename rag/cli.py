"""`mcqa index build|query`, `mcqa mine` and `mcqa eval retrieval`: the RAG side of the command line.

mcqa.cli registers these commands on its app; the helpers they share come from mcqa.cli_common.
FAISS and sentence-transformers load inside the commands, never at start-up.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.table import Table

from mcqa.cli_common import DataDir, console, err, fail, progress_bar
from mcqa.datasets import DatasetError, get_spec, load_misconceptions, load_split
from mcqa.models import DEFAULT_EMBEDDER, ModelNotFound

index_app = typer.Typer(
    help="Build and query FAISS indexes of solved examples (few-shot) or of a misconception "
    "catalogue. Built indexes are cached and reused by the agent.",
    no_args_is_help=True,
)

KINDS = ("misconceptions", "examples")

DatasetOpt = typer.Option("eedi", "--dataset", "-d", help="Dataset name (see `mcqa data list`).")
KindOpt = typer.Option(
    "misconceptions",
    "--kind",
    help="misconceptions (the dataset's catalogue) or examples (solved items of a split, for few-shot prompts).",
)
ExamplesSplit = typer.Option(
    "train",
    "--split",
    "-s",
    help="For examples: the split to store. `fit` and `validation` "
    "are the two sides of the train split (see --fraction, --seed, --unseen).",
)
ModelOpt = typer.Option(
    DEFAULT_EMBEDDER,
    "--model",
    "-m",
    help="Embedder: a registry name (`mcqa models`) or a local sentence-transformers folder, e.g. a fine-tuned one.",
)
QueryTemplate = typer.Option(
    "{text}",
    "--query-template",
    help="Instruction format for queries, with one {text}, e.g. 'query: {text}' for E5-style models.",
)
PassageTemplate = typer.Option(
    "{text}",
    "--passage-template",
    help="Instruction format for indexed passages (misconception names, items), with one {text}.",
)
BatchSize = typer.Option(32, "--batch-size", min=1, help="Texts per encoder batch.")
Fraction = typer.Option(
    0.2,
    "--fraction",
    min=0.01,
    max=0.99,
    help="Share of the train questions held out as `validation`; the rest is `fit`.",
)
Seed = typer.Option(0, "--seed", help="Seed of the fit/validation split (the same seed gives the same split).")
Unseen = typer.Option(
    False,
    "--unseen",
    help="Make every misconception labelled in validation absent from fit "
    "(questions linked by a shared label stay on one side).",
)


def make_embedder(model: str, query_template: str, passage_template: str, batch_size: int):
    from mcqa.rag.embedder import Embedder

    try:
        return Embedder(model, query_format=query_template, passage_format=passage_template, batch_size=batch_size)
    except (ModelNotFound, ValueError) as exc:
        fail(str(exc))


def read_items(dataset: str, split: str, data: Path | None, fraction: float, seed: int, unseen: bool):
    from mcqa.rag.splits import DERIVED_SPLITS, load_items

    try:
        return load_items(dataset, split, data, fraction, seed, unseen)
    except DatasetError as exc:
        hint = f" (or {', '.join(DERIVED_SPLITS)}: the two sides of train)" if "unknown split" in str(exc) else ""
        fail(f"{exc}{hint}")


def read_catalogue(dataset: str, data: Path | None):
    try:
        return load_misconceptions(dataset, data)
    except DatasetError as exc:
        fail(str(exc))


@contextlib.contextmanager
def encoding_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich bar fed by Embedder.encode's progress callback, with texts/s. It appears on the first
    callback, so an index served from the cache (nothing encoded) draws no empty bar."""
    with contextlib.ExitStack() as stack:
        state: dict = {}

        def advance(n: int) -> None:
            if not state:
                bar = stack.enter_context(progress_bar())
                state.update(bar=bar, task=bar.add_task(description, total=total, rate=""), started=time.perf_counter())
            bar, task = state["bar"], state["task"]
            done = bar.tasks[task].completed + n
            bar.update(task, advance=n, rate=f"{done / max(time.perf_counter() - state['started'], 1e-9):.1f} texts/s")

        yield advance


def open_index(
    kind: str,
    dataset: str,
    split: str,
    embedder,
    data: Path | None,
    saved: Path | None,
    fraction: float,
    seed: int,
    unseen: bool,
    index: str = "flat",
):
    """A saved folder (`saved`), else the cached index of the dataset (built, with a progress bar, if missing)."""
    from mcqa.rag.cache import load_or_build_example_store, load_or_build_misconception_index
    from mcqa.rag.store import ExampleStore, MisconceptionIndex
    from mcqa.rag.vectors import StoreError

    if kind not in KINDS:
        fail(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        if saved is not None:
            return (MisconceptionIndex if kind == "misconceptions" else ExampleStore).load(saved, embedder)
        if kind == "misconceptions":
            with encoding_progress(f"encoding {dataset} misconceptions", len(read_catalogue(dataset, data))) as advance:
                return load_or_build_misconception_index(dataset, embedder, data, progress=advance)
        total = len(read_items(dataset, split, data, fraction, seed, unseen))
        with encoding_progress(f"encoding {dataset}/{split} items", total) as advance:
            return load_or_build_example_store(
                dataset,
                split,
                embedder,
                data,
                progress=advance,
                fraction=fraction,
                seed=seed,
                unseen=unseen,
                index=index,
            )
    except (StoreError, DatasetError, ValueError) as exc:
        fail(str(exc))


@index_app.command("build")
def index_build(
    kind: str = KindOpt,
    dataset: str = DatasetOpt,
    split: str = ExamplesSplit,
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Save the index in this folder. Default: the cache ($MCQA_CACHE_DIR/indexes), where the agent finds it.",
    ),
    index: str = typer.Option("flat", "--index", help="flat (exact) or hnsw (approximate, for 100k+ examples)."),
    model: str = ModelOpt,
    query_template: str = QueryTemplate,
    passage_template: str = PassageTemplate,
    batch_size: int = BatchSize,
    fraction: float = Fraction,
    seed: int = Seed,
    unseen: bool = Unseen,
    data: Path | None = DataDir,
) -> None:
    """Embed a misconception catalogue or a split's solved items into a FAISS index, saved with a manifest.

    The manifest records the embedder, dimension, count and checksums."""
    from mcqa.rag.store import ExampleStore, MisconceptionIndex

    embedder = make_embedder(model, query_template, passage_template, batch_size)
    started = time.perf_counter()
    if out is None:
        built = open_index(kind, dataset, split, embedder, data, None, fraction, seed, unseen, index)
    else:
        if kind not in KINDS:
            fail(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "misconceptions":
            records = read_catalogue(dataset, data)
        else:
            records = [i for i in read_items(dataset, split, data, fraction, seed, unseen) if i.answer is not None]
        source = {"dataset": dataset} | ({"split": split} if kind == "examples" else {})
        try:
            with encoding_progress(f"encoding {len(records)} {kind}", len(records)) as advance:
                if kind == "misconceptions":
                    built = MisconceptionIndex.build(records, embedder, progress=advance, source=source, index=index)
                else:
                    built = ExampleStore.build(records, embedder, index=index, progress=advance, source=source)
        except ValueError as exc:
            fail(str(exc))
        built.save(out)
    console.print(
        f"{kind} index of {dataset}{'/' + split if kind == 'examples' else ''}: {len(built)} vectors x "
        f"{embedder.dim} ({embedder.name}) in {built.folder} [{time.perf_counter() - started:.1f}s]",
        highlight=False,
    )


def find_item(dataset: str, item_id: str, data: Path | None):
    """An item by id from any split of the dataset (train first)."""
    for split in get_spec(dataset).splits:
        try:
            found = next((i for i in load_split(dataset, split, data).items if i.id == item_id), None)
        except DatasetError:
            continue
        if found is not None:
            return found
    fail(f"no item {item_id!r} in any split of {dataset}")


@index_app.command("query")
def index_query(
    text: str | None = typer.Argument(None, help="For misconceptions: the query text (or use --item and --wrong)."),
    kind: str = KindOpt,
    dataset: str = DatasetOpt,
    split: str = ExamplesSplit,
    saved: Path | None = typer.Option(
        None, "--from", help="A folder saved by `mcqa index build --out` (default: the dataset's cached index)."
    ),
    item: str | None = typer.Option(
        None,
        "--item",
        "-i",
        help="Query with this item of the dataset (examples: its similar items; misconceptions: with --wrong).",
    ),
    wrong: str | None = typer.Option(
        None, "--wrong", help="The wrong answer's letter, for a misconception query built from --item."
    ),
    query_format_name: str | None = typer.Option(
        None,
        "--format",
        help="Query format for --item/--wrong (see `mcqa eval retrieval`); default: the measured best.",
    ),
    k: int = typer.Option(10, "--k", "-k", min=1, help="How many hits to show."),
    model: str = ModelOpt,
    query_template: str = QueryTemplate,
    passage_template: str = PassageTemplate,
    batch_size: int = BatchSize,
    fraction: float = Fraction,
    seed: int = Seed,
    unseen: bool = Unseen,
    data: Path | None = DataDir,
) -> None:
    """Show the nearest misconceptions to a text or a wrong answer, or the nearest solved items to an item."""
    from mcqa.rag.queries import DEFAULT_QUERY_FORMAT, query_format

    embedder = make_embedder(model, query_template, passage_template, batch_size)
    if kind == "examples":
        if item is None:
            fail("an examples query needs --item ID (the item whose similar solved items to show)")
        query_item = find_item(dataset, item, data)
        store = open_index(kind, dataset, split, embedder, data, saved, fraction, seed, unseen)
        table = Table(title=f"items like {dataset} item {item} (itself excluded)")
        for column in ("rank", "item", "score", "question", "answer"):
            table.add_column(column, justify="right" if column in ("rank", "score") else "left")
        for rank, (hit, score) in enumerate(store.search_scored([query_item], k)[0], start=1):
            answer = f"{hit.answer}) {hit.choice(hit.answer)}" if hit.answer else "-"
            table.add_row(str(rank), hit.id, f"{score:.3f}", " ".join(hit.question.split())[:120], answer[:60])
        console.print(table)
        return
    if text is None:
        if item is None or wrong is None:
            fail("give a query TEXT, or --item ID with --wrong LETTER")
        try:
            text = query_format(query_format_name or DEFAULT_QUERY_FORMAT)(find_item(dataset, item, data), wrong)
        except ValueError as exc:
            fail(str(exc))
    index = open_index(kind, dataset, split, embedder, data, saved, fraction, seed, unseen)
    table = Table(title=f"misconceptions nearest to: {text[:150]}")
    for column in ("rank", "id", "score", "misconception"):
        table.add_column(column, justify="right" if column != "misconception" else "left")
    for rank, (mid, score) in enumerate(index.search([text], k)[0], start=1):
        table.add_row(str(rank), mid, f"{score:.3f}", index.name_of(mid))
    console.print(table)


def mine_cmd(
    dataset: str = DatasetOpt,
    split: str = typer.Option(
        "fit",
        "--split",
        "-s",
        help="Items whose labelled wrong answers become "
        "(query, positive) pairs. Default `fit`, so validation never leaks into training.",
    ),
    out: Path = typer.Option(
        Path("runs/hard_negatives.jsonl"),
        "--out",
        "-o",
        help="JSON lines: query, positive, negatives (and their ids, the item and letter).",
    ),
    query_format_name: str | None = typer.Option(
        None, "--format", help="Query format of the pairs (default: the measured best)."
    ),
    rank_min: int = typer.Option(
        2,
        "--rank-min",
        min=0,
        help="Skip the closest candidates: negatives start at this rank (0-based, positives not counted).",
    ),
    rank_max: int = typer.Option(200, "--rank-max", min=1, help="Negatives come from ranks below this."),
    n: int = typer.Option(10, "--n", "-n", min=1, help="Negatives per pair."),
    sampling: str = typer.Option(
        "random", "--sampling", help="random: draw n from the rank window; top: take its first n."
    ),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of the random draw."),
    model: str = ModelOpt,
    query_template: str = QueryTemplate,
    passage_template: str = PassageTemplate,
    batch_size: int = BatchSize,
    fraction: float = Fraction,
    seed: int = Seed,
    unseen: bool = Unseen,
    data: Path | None = DataDir,
) -> None:
    """Mine hard negatives for embedder fine-tuning, with the current embedder.

    For each labelled wrong answer: misconceptions ranked in [--rank-min, --rank-max) that are not
    labelled for it."""
    from mcqa.rag.mining import mine, training_pairs, write_jsonl
    from mcqa.rag.queries import DEFAULT_QUERY_FORMAT

    embedder = make_embedder(model, query_template, passage_template, batch_size)
    catalogue = read_catalogue(dataset, data)
    items = read_items(dataset, split, data, fraction, seed, unseen)
    try:
        pairs = training_pairs(items, catalogue, query_format_name or DEFAULT_QUERY_FORMAT)
    except ValueError as exc:
        fail(str(exc))
    if not pairs:
        fail(f"{dataset}/{split} has no labelled wrong answers to mine from")
    err.print(
        f"mining {n} negatives from ranks [{rank_min}, {rank_max}) for {len(pairs)} pairs of {dataset}/{split} "
        f"against {len(catalogue)} misconceptions ({embedder.name})",
        highlight=False,
    )
    started = time.perf_counter()
    try:
        rows = mine(pairs, catalogue, embedder, rank_min, rank_max, n, sampling, sample_seed, verbose=True)
    except ValueError as exc:
        fail(str(exc))
    written = write_jsonl(rows, out)
    dropped = len(pairs) - written
    console.print(
        f"{written} rows written to {out} in {time.perf_counter() - started:.1f}s"
        + (f" ({dropped} pairs dropped: fewer than {n} candidates)" if dropped else ""),
        highlight=False,
    )


def retrieval_cmd(
    dataset: str = DatasetOpt,
    split: str = typer.Option(
        "validation",
        "--split",
        "-s",
        help="Whose labelled wrong answers are the "
        "queries: `validation` (held out of train), `fit`, or a dataset split.",
    ),
    formats: list[str] | None = typer.Option(
        None, "--format", help="Query format(s) to score, repeatable (default: all)."
    ),
    k: int = typer.Option(25, "--k", "-k", min=1, help="Cut-off of MAP@k and Recall@k (Eedi: 25)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the figures as JSON here."),
    model: str = ModelOpt,
    ensemble: list[str] | None = typer.Option(
        None,
        "--ensemble",
        "-e",
        help="Another embedder whose "
        "lists are fused with --model's, repeatable: what the "
        "agent's `embedders` does (same templates and batch size).",
    ),
    fusion: str = typer.Option(
        "zsum",
        "--fusion",
        help="Ensembles: zsum (weighted sum of z-scored "
        "cosines over the union of candidates) or rrf (reciprocal rank fusion).",
    ),
    fusion_weights: list[float] | None = typer.Option(
        None, "--fusion-weight", help="Ensembles: one per member, --model's first, repeatable (default: all 1)."
    ),
    candidates: int = typer.Option(
        50,
        "--candidates",
        min=1,
        help="Ensembles: candidates each member retrieves before fusion (the agent's `candidates`).",
    ),
    contrast: float = typer.Option(
        0.0,
        "--sibling-contrast",
        min=0.0,
        max=0.99,
        help="Query minus "
        "this much of the mean of the question's other wrong answers (the "
        "agent's `sibling_contrast`; Eedi's default 0.4). 0: plain queries.",
    ),
    hubness: float = typer.Option(
        0.0,
        "--hubness",
        min=0.0,
        help="Subtract this times each "
        "misconception's hub score (the mean of its --hubness-k highest "
        "cosines with every wrong answer of the split), the agent's "
        "`hubness` (Eedi's default 0.75). 0: plain cosines.",
    ),
    hubness_k: int = typer.Option(50, "--hubness-k", min=1, help="Neighbours behind a hub score."),
    query_template: str = QueryTemplate,
    passage_template: str = PassageTemplate,
    batch_size: int = BatchSize,
    fraction: float = Fraction,
    seed: int = Seed,
    unseen: bool = Unseen,
    data: Path | None = DataDir,
) -> None:
    """MAP@k and Recall@k of misconception retrieval by the embedder alone (or an ensemble), per query format.

    Every labelled wrong answer of the split is a query, searched against the whole catalogue."""
    from mcqa.rag.queries import DEFAULT_QUERY_FORMAT, QUERY_FORMATS
    from mcqa.rag.retrieval import FUSIONS, count_queries, score_format
    from mcqa.rag.retrieval import fusion_weights as check_weights
    from mcqa.rag.splits import DERIVED_SPLITS, unseen_mode

    names = formats or list(QUERY_FORMATS)
    if unknown := [f for f in names if f not in QUERY_FORMATS]:
        fail(f"unknown query format(s) {', '.join(unknown)}; known: {', '.join(QUERY_FORMATS)}")
    if fusion not in FUSIONS:
        fail(f"--fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    members = [model, *(ensemble or [])]
    try:
        weights = check_weights(len(members), fusion_weights or None)
    except ValueError as exc:
        fail(f"--fusion-weight: {exc}")
    embedders = [make_embedder(m, query_template, passage_template, batch_size) for m in members]
    items = read_items(dataset, split, data, fraction, seed, unseen)
    n_queries = count_queries(items)
    if not n_queries:
        fail(f"{dataset}/{split} has no labelled wrong answers to score")
    indexes = [open_index("misconceptions", dataset, split, e, data, None, fraction, seed, unseen) for e in embedders]
    index, embedder = indexes[0], embedders[0]
    unseen = unseen_mode(split, unseen)  # as load_items reads the split
    mode = (
        f" ({'unseen' if unseen else 'seen'} misconceptions, fraction {fraction}, seed {seed})"
        if split in DERIVED_SPLITS
        else ""
    )
    fused = f" fused by {fusion} (weights {weights}, {candidates} candidates each)" if len(indexes) > 1 else ""
    err.print(
        f"{dataset}/{split}{mode}: {len(items)} items, {n_queries} labelled wrong answers; "
        f"{len(index)} misconceptions; embedder{'s' if fused else ''} {', '.join(e.name for e in embedders)}"
        f"{fused}",
        highlight=False,
    )
    scores = []
    for name in names:
        with encoding_progress(
            f"{name} queries", count_queries(items, bool(contrast or hubness)) * len(indexes)
        ) as advance:
            scores.append(
                score_format(
                    items,
                    indexes if fused else index,
                    name,
                    k,
                    on_progress=advance,
                    fusion=fusion,
                    weights=weights,
                    candidates=candidates,
                    contrast=contrast,
                    hubness=hubness,
                    hubness_k=hubness_k,
                )
            )
    best = max(scores, key=lambda s: s.map_at_k)
    table = Table(title=f"misconception retrieval, {dataset}/{split}{mode}{' (ensemble)' if fused else ''}")
    for column in ("format", "queries", f"MAP@{k}", f"Recall@{k}", "queries/s", "search ms"):
        table.add_column(column, justify="left" if column == "format" else "right", no_wrap=True)
    for s in scores:
        table.add_row(
            s.format + ("*" if s.format == DEFAULT_QUERY_FORMAT else ""),
            str(s.queries),
            f"{s.map_at_k:.4f}",
            f"{s.recall_at_k:.4f}",
            f"{s.queries / max(s.encode_s, 1e-9):.1f}",
            f"{s.search_s * 1000:.1f}",
        )
    console.print(table)
    best_recall = max(scores, key=lambda s: s.recall_at_k)
    console.print(
        f"* the default query format. Best MAP@{k}: {best.format} ({best.map_at_k:.4f}); "
        f"best Recall@{k}: {best_recall.format} ({best_recall.recall_at_k:.4f}).",
        highlight=False,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "dataset": dataset,
                    "split": split,
                    "unseen": unseen,
                    "fraction": fraction,
                    "seed": seed,
                    "items": len(items),
                    "embedder": embedder.describe(),
                    "misconceptions": len(index),
                    "sibling_contrast": contrast,
                    "hubness": hubness,
                    "hubness_k": hubness_k,
                    **(
                        {
                            "ensemble": {
                                "embedders": [e.describe() for e in embedders],
                                "fusion": fusion,
                                "weights": weights,
                                "candidates": candidates,
                            }
                        }
                        if fused
                        else {}
                    ),
                    "best": best.format,
                    "default": DEFAULT_QUERY_FORMAT,
                    "scores": [s.as_dict() for s in scores],
                },
                indent=2,
            )
            + "\n"
        )
        console.print(f"written {out}")
