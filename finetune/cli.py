"""`mcqa train embedder|reranker|llm|refiner`: one command per training recipe.

Each recipe is a module of mcqa.finetune with a pydantic `Config` (its YAML keys, documented where
defined; examples in finetune/configs/) and `train(config, run)`, which writes its artifact and
results.json into the run folder. mcqa.cli imports this module at its end; heavy libraries load
inside the recipes.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

import typer

from mcqa.cli import console, fail

train_app = typer.Typer(help="Fine-tune the models the agent uses. Every run writes OUT/config.yaml, checkpoints "
                             "(a killed run resumes from them: run the same command again), the trained model and "
                             "OUT/results.json (metrics, seconds per step, total time).", no_args_is_help=True)

RECIPES = {
    "embedder": "mcqa.finetune.embedder",
    "reranker": "mcqa.finetune.reranker",
    "llm": "mcqa.finetune.llm",
    "refiner": "mcqa.finetune.refiner",
}

ConfigOpt = typer.Option(None, "--config", help="Recipe YAML (keys: see the recipe's Config; examples in "
                         "finetune/configs/). Default: the recipe's defaults.")
OutOpt = typer.Option(..., "--out", "-o", help="Run folder (created; an existing run with the same config resumes).")
ForceOpt = typer.Option(False, "--force", help="Delete what OUT holds and start over.")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: every core).")
SeedOpt = typer.Option(None, "--seed", help="Seed for data building and training (overrides the config).")
MaxStepsOpt = typer.Option(None, "--max-steps", min=1, help="Stop each training stage after this many steps "
                           "(a quick check of a config; overrides the config).")


def run_recipe(name: str, config_path: Optional[Path], out: Path, force: bool, threads: Optional[int],
               **overrides) -> dict:
    """Load the recipe's config, open the run folder and train; prints where results went."""
    from mcqa.finetune.common import TrainError, TrainRun, load_train_config, set_threads

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
def train_embedder(config: Optional[Path] = ConfigOpt, out: Path = OutOpt, force: bool = ForceOpt,
                   threads: Optional[int] = ThreadsOpt, seed: Optional[int] = SeedOpt,
                   max_steps: Optional[int] = MaxStepsOpt) -> None:
    """Contrastive fine-tuning of the sentence-transformers embedder (MNRL) with iteratively mined hard negatives."""
    run_recipe("embedder", config, out, force, threads, seed=seed, max_steps=max_steps)


@train_app.command("reranker")
def train_reranker(config: Optional[Path] = ConfigOpt, out: Path = OutOpt, force: bool = ForceOpt,
                   threads: Optional[int] = ThreadsOpt, seed: Optional[int] = SeedOpt,
                   max_steps: Optional[int] = MaxStepsOpt) -> None:
    """A CrossEncoder reranker from the packaged MiniLM, on the embedder's top candidates (binary loss)."""
    run_recipe("reranker", config, out, force, threads, seed=seed, max_steps=max_steps)


@train_app.command("refiner")
def train_refiner(config: Optional[Path] = ConfigOpt, out: Path = OutOpt, force: bool = ForceOpt,
                  threads: Optional[int] = ThreadsOpt, seed: Optional[int] = SeedOpt,
                  max_steps: Optional[int] = MaxStepsOpt) -> None:
    """A small refiner over frozen embeddings (triplet hinge) with a ridge head: cheap metric learning on CPU."""
    run_recipe("refiner", config, out, force, threads, seed=seed, max_steps=max_steps)
