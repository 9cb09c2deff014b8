"""What every training mode shares: its run folder, resuming after a crash, timing, and results.json.

A training run writes `OUT/` (one folder per run, torchtune-style: one recipe, one YAML config):
- `config.yaml`: the recipe's config as run (a second run into the same folder with another config is
  refused unless `--force`, so a resumed run never mixes settings);
- `checkpoints/`: the trainer's checkpoints (`checkpoint-N`), from which a killed run resumes;
- `model/` (or the recipe's named outputs): the trained artifact, usable as a path in `mcqa` configs;
- `results.json`: what was measured (metrics before/after, steps, seconds per step, total seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mcqa.config import read_yaml_mapping

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class RetrievalSplit(BaseModel):
    """The fields every retrieval recipe shares: which data, split how, scored how.

    Training uses the `fit` side of the dataset's train split and scores on the `validation` side against
    the whole catalogue; `unseen` keeps every validation misconception out of training, which is what
    held-out competition data looks like.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("eedi", description="A dataset with a misconception catalogue (eedi).")
    query_format: str = Field("subject_correct", description="How a wrong answer becomes a query (mcqa.rag.queries).")
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of train questions held out as validation.")
    unseen: bool = Field(True, description="Validation misconceptions never appear in training.")
    seed: int = Field(0, description="Seeds the split, the negative sampling and training.")
    k: int = Field(25, ge=1, description="MAP@k / Recall@k cut-off of the validation score.")
    limit: int | None = Field(None, ge=1, description="Use only this many fit and validation items (a quick check).")


def retrieval_data(config: RetrievalSplit) -> tuple[list, list, list]:
    """(fit items, validation items, catalogue) of the recipe's dataset."""
    import random

    from mcqa.datasets import load_misconceptions
    from mcqa.rag.splits import load_items

    fit = load_items(config.dataset, "fit", fraction=config.fraction, seed=config.seed, unseen=config.unseen)
    validation = load_items(
        config.dataset, "validation", fraction=config.fraction, seed=config.seed, unseen=config.unseen
    )
    rng = random.Random(config.seed)
    fit, validation = (sample_limit(items, config.limit, rng) for items in (fit, validation))
    return fit, validation, load_misconceptions(config.dataset)


def sample_limit(items: list, limit: int | None, rng) -> list:
    """`limit` items drawn by `rng` (a random.Random), in their original order (a recipe's quick check),
    or all of them."""
    if not limit:
        return items
    chosen = set(rng.sample(range(len(items)), min(limit, len(items))))
    return [item for n, item in enumerate(items) if n in chosen]


class TrainError(ValueError):
    """A training run that cannot start as asked (bad config, a folder holding another run)."""


def load_train_config(model: type[BaseModel], path: Path | None, **overrides: Any) -> BaseModel:
    """A recipe config from YAML (or the defaults), with CLI overrides (None means not given)."""
    try:
        raw = read_yaml_mapping(path) if path is not None else {}
    except ValueError as exc:
        raise TrainError(str(exc)) from exc
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(raw)
    except ValueError as exc:
        raise TrainError(f"bad config: {exc}") from exc


def same_config(config: BaseModel, saved) -> bool:
    """Whether a run folder's saved config is `config`. The saved one is read through the current model,
    so a field added since the run started reads as its default and the run still resumes."""
    try:
        return type(config).model_validate(saved).model_dump(mode="json") == config.model_dump(mode="json")
    except ValueError:
        return False


class TrainRun:
    """The run folder of one training run (see the module docstring)."""

    def __init__(self, out: Path, config: BaseModel, force: bool = False):
        self.path = Path(out)
        self.config = config
        if force and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        saved = self.path / "config.yaml"
        as_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        if saved.exists() and not same_config(config, yaml.safe_load(saved.read_text())):
            raise TrainError(
                f"{self.path} holds a run with another config ({saved}); resume it with "
                f"--config {saved}, use another --out, or --force to start over"
            )
        saved.write_text(as_yaml)
        self.started = time.perf_counter()

    def sub(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def checkpoints(self) -> Path:
        return self.sub("checkpoints")

    def done(self, name: str) -> bool:
        """Whether a stage finished in an earlier invocation (its marker exists): resume skips it."""
        return (self.path / f".done-{name}").exists()

    def mark_done(self, name: str) -> None:
        (self.path / f".done-{name}").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))

    def read_results(self) -> dict:
        path = self.path / "results.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def write_results(self, results: dict) -> Path:
        """Merge into results.json (atomically): stages of a resumed run add to what earlier ones wrote."""
        merged = self.read_results() | results
        path = self.path / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path


def latest_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` a transformers/sentence-transformers trainer saved there, if any."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    ]
    return str(max(steps)[1]) if steps else None


def set_threads(n: int | None) -> None:
    """Torch CPU threads for training (None: leave torch's default, every core)."""
    if n:
        import torch

        os.environ["MCQA_THREADS"] = str(n)  # the embedder loader sets torch's threads from it
        torch.set_num_threads(n)


def step_timer():
    """A transformers TrainerCallback that records the wall time of every optimizer step.

    `timer.step_seconds` is the list; `timing(timer)` summarises it for results.json.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.step_seconds: list[float] = []
            self._last: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._last is not None:
                self.step_seconds.append(time.perf_counter() - self._last)

    return StepTimer()


def timing(timer) -> dict:
    """Steps, median and mean seconds per step, and total training seconds of a StepTimer."""
    seconds = sorted(timer.step_seconds)
    if not seconds:
        return {"steps": 0}
    return {
        "steps": len(seconds),
        "median_step_s": round(seconds[len(seconds) // 2], 3),
        "mean_step_s": round(sum(seconds) / len(seconds), 3),
        "train_s": round(sum(seconds), 1),
    }
