"""`mcqa train embedder|reranker|llm|refiner|classifier|seqclass|map-fusion`: one command per training recipe.

Each recipe is a module of mcqa.finetune with a pydantic `Config` (its YAML keys, documented where
defined; examples in finetune/configs/) and `train(config, run)`, which writes its artifact and
results.json into the run folder. mcqa.cli registers `train_app` on its app; heavy libraries load
inside the recipes.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import typer

from mcqa.cli_common import console, fail

train_app = typer.Typer(
    help="Fine-tune the models the agent uses. Every run writes OUT/config.yaml, checkpoints "
    "(a killed run resumes from them: run the same command again), the trained model and "
    "OUT/results.json (metrics, seconds per step, total time).",
    no_args_is_help=True,
)

RECIPES = {
    "embedder": "mcqa.finetune.embedder",
    "reranker": "mcqa.finetune.reranker",
    "llm": "mcqa.finetune.llm",
    "refiner": "mcqa.finetune.refiner",
    "classifier": "mcqa.finetune.classifier",
    "seqclass": "mcqa.finetune.seqclass",
    "map-fusion": "mcqa.finetune.map_fusion",
}
# The pip extra each recipe imports (mcqa.extras): checked before a run folder is made. The refiner
# (torch on cached vectors) and the classifier (scikit-learn) need no trainer stack.
RECIPE_EXTRAS = {
    "embedder": "train",
    "reranker": "train",
    "llm": "train",
    "refiner": "retrieval",
    "classifier": "retrieval",
    "seqclass": "retrieval",  # torch + transformers, no trainer stack (its own loop)
    "map-fusion": "retrieval",  # the agent's label store and head, a seqclass model
}

ConfigOpt = typer.Option(
    None,
    "--config",
    help="Recipe YAML (keys: see the recipe's Config; examples in finetune/configs/). Default: the recipe's defaults.",
)
OutOpt = typer.Option(..., "--out", "-o", help="Run folder (created; an existing run with the same config resumes).")
ForceOpt = typer.Option(False, "--force", help="Delete what OUT holds and start over.")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: every core).")
SeedOpt = typer.Option(None, "--seed", help="Seed for data building and training (overrides the config).")
LimitOpt = typer.Option(
    None,
    "--limit",
    min=1,
    help="Use only this many fit and validation items, a seeded sample (a quick check; overrides the config).",
)
MaxStepsOpt = typer.Option(
    None,
    "--max-steps",
    min=1,
    help="Stop each training stage after this many steps (a quick check of a config; overrides the config).",
)


def run_recipe(name: str, config_path: Path | None, out: Path, force: bool, threads: int | None, **overrides) -> dict:
    """Load the recipe's config, open the run folder and train; prints where results went."""
    from mcqa.extras import check
    from mcqa.finetune.common import TrainError, TrainRun, load_train_config, set_threads

    check(RECIPE_EXTRAS[name], f"mcqa train {name}")
    recipe = importlib.import_module(RECIPES[name])
    try:
        config = load_train_config(recipe.Config, config_path, **overrides)
        run = TrainRun(out, config, force=force)
    except TrainError as exc:
        fail(str(exc))
    set_threads(threads)
    try:
        results = recipe.train(config, run)
    except (TrainError, FileNotFoundError) as exc:
        fail(str(exc))
    path = run.write_results(results)
    console.print_json(json.dumps({k: v for k, v in results.items() if k != "config"}, default=str))
    console.print(f"results: {path}")
    return results


@train_app.command("embedder")
def train_embedder(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    max_steps: int | None = MaxStepsOpt,
    limit: int | None = LimitOpt,
) -> None:
    """Contrastive fine-tuning of the sentence-transformers embedder (MNRL) with iteratively mined hard negatives."""
    run_recipe("embedder", config, out, force, threads, seed=seed, max_steps=max_steps, limit=limit)


@train_app.command("reranker")
def train_reranker(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    max_steps: int | None = MaxStepsOpt,
    limit: int | None = LimitOpt,
) -> None:
    """A CrossEncoder reranker from the packaged MiniLM, on the embedder's top candidates (binary loss)."""
    run_recipe("reranker", config, out, force, threads, seed=seed, max_steps=max_steps, limit=limit)


@train_app.command("refiner")
def train_refiner(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    max_steps: int | None = MaxStepsOpt,
    limit: int | None = LimitOpt,
) -> None:
    """A small refiner over frozen embeddings (triplet hinge) with a ridge head: cheap metric learning on CPU."""
    run_recipe("refiner", config, out, force, threads, seed=seed, max_steps=max_steps, limit=limit)


@train_app.command("classifier")
def train_classifier(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    limit: int | None = LimitOpt,
) -> None:
    """A label classifier on frozen embeddings (logistic regression, seconds): its probabilities join the label
    votes (`agent.classifier: OUT/model`). For MAP, whose test asks train's questions."""
    run_recipe("classifier", config, out, force, threads, seed=seed, limit=limit)


@train_app.command("seqclass")
def train_seqclass(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    max_steps: int | None = MaxStepsOpt,
    limit: int | None = LimitOpt,
) -> None:
    """An end-to-end fine-tuned sequence classifier for MAP (MiniLM + linear head, cross-entropy over
    `Category:Misconception`); MAP@3 on validation, restricted to each question's labels and not."""
    run_recipe("seqclass", config, out, force, threads, seed=seed, max_steps=max_steps, limit=limit)


@train_app.command("map-fusion")
def train_map_fusion(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    limit: int | None = LimitOpt,
) -> None:
    """MAP's fusion weights (votes, head, n-gram, seqclass) chosen on an inner split of fit: the agent solves
    validation-inner once, every weighting of the grid is scored by MAP@3, the best is written as
    OUT/agent-map.yaml (with the seqclass model trained on fit) for `mcqa eval run --config`."""
    run_recipe("map-fusion", config, out, force, threads, limit=limit)


@train_app.command("llm")
def train_llm(
    config: Path | None = ConfigOpt,
    out: Path = OutOpt,
    force: bool = ForceOpt,
    threads: int | None = ThreadsOpt,
    seed: int | None = SeedOpt,
    max_steps: int | None = MaxStepsOpt,
    model: str | None = typer.Option(None, "--model", help="Base model (overrides the config)."),
    task: str | None = typer.Option(None, "--task", help="answer | rerank | think (overrides the config)."),
) -> None:
    """LoRA SFT of the LLM on the agent's prompts, loss on the answer only (unsloth on CUDA, peft+TRL on CPU);
    exports a GGUF LoRA adapter for llama.cpp (OUT/adapter.gguf) and/or merged weights for vLLM (OUT/merged)."""
    run_recipe("llm", config, out, force, threads, seed=seed, max_steps=max_steps, base=model, task=task)


@train_app.command("think-data")
def think_data(
    dataset: str = typer.Option(..., "--dataset", help="Dataset whose wrong answers are explained."),
    split: str = typer.Option("fit", "--split", help="Split (fit: the train side of the train split)."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL written (appended; a rerun completes it)."),
    limit: int | None = typer.Option(200, "--limit", min=1, help="Wrong answers explained (seeded sample)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample (decoding is greedy)."),
    config: Path | None = typer.Option(None, "--config", help="mcqa config; its `llm` is the teacher."),
    model: str | None = typer.Option(None, "--model", help="Teacher model (overrides the config)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads of the teacher."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=8, help="Tokens per explanation at most."),
) -> None:
    """Teacher explanations of wrong answers (the misconception, with the gold label as a hint where the dataset
    has one), saved as JSONL for `mcqa train llm` with task: think."""
    from mcqa.config import load_config
    from mcqa.finetune.think import generate_think_data
    from mcqa.llm import load_llm

    try:
        cfg = load_config(config, **{"llm.model": model, "llm.n_threads": threads})
    except ValueError as exc:
        fail(str(exc))
    llm = load_llm(cfg.llm)
    try:
        counts = generate_think_data(
            dataset,
            split,
            out,
            llm,
            limit=limit,
            seed=seed,
            max_tokens=max_tokens,
            progress=lambda done, total: console.print(f"{done}/{total}", end="\r"),
        )
    finally:
        llm.close()
    console.print_json(json.dumps(counts))
