"""Recipe: contrastive fine-tuning of the embedder with iteratively mined hard negatives.

Round 0 mines hard negatives with the base model (or with `miner`, a faster one); round k mines again with the model of round k-1
and continues training it (the loop strong Eedi solutions used: negatives get harder as the model
gets better). The loss is MultipleNegativesRankingLoss (InfoNCE over in-batch and mined negatives,
`scale` = 1/temperature), or its cached variant for batches larger than memory allows. An optional
last stage distils a reranker: MarginMSE towards the CrossEncoder's score margins between the
positive and each mined negative, so the embedder learns the reranker's graded judgement instead
of 0/1 labels.

Training uses the `fit` side of the dataset's train split and every round is scored by MAP@25 and
Recall@25 on the `validation` side against the whole catalogue (`unseen: true`, the default, keeps
every validation misconception out of training, which is what held-out competition data looks like).
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from mcqa.finetune.common import RetrievalSplit, TrainRun, latest_checkpoint, retrieval_data, step_timer, timing


class Config(RetrievalSplit):
    base: str = Field("minilm-l6", description="Embedder to start from: registry name or sentence-transformers folder.")
    rounds: int = Field(
        1,
        ge=1,
        description="Mine-then-train rounds; round k mines with the model of round k-1 (1, measured best: "
        "a second round lowered MAP@25 from 0.277 to 0.258 on an inner split of Eedi's fit-unseen).",
    )
    miner: str | None = Field(
        None,
        description="Embedder that mines round 0's negatives instead of `base`: a fast "
        "model (minilm-l6) mining for a slow one saves encoding the fit "
        "queries and the catalogue with the slow one.",
    )
    negatives: int = Field(
        1, ge=1, description="Hard negatives per (query, positive) pair (1, measured best: 3 gave 0.234 against 0.276)."
    )
    rank_min: int = Field(
        2,
        ge=0,
        description="Negatives are drawn from ranks [rank_min, rank_max) of the current model "
        "(the very top is skipped: near-duplicates of the label live there).",
    )
    rank_max: int = Field(60, ge=2)
    epochs: float = Field(1.0, gt=0, description="Epochs over the mined pairs per round.")
    batch_size: int = Field(32, ge=2, description="Pairs per step; every other pair's texts are in-batch negatives.")
    cached: bool = Field(False, description="CachedMultipleNegativesRankingLoss: large batches in small memory.")
    mini_batch_size: int = Field(16, ge=1, description="Chunk size of the cached loss.")
    scale: float = Field(20.0, gt=0, description="MNRL scale (1/temperature) on cosine similarities.")
    learning_rate: float = Field(5e-5, gt=0)
    max_seq_length: int = Field(
        256,
        ge=16,
        description="Tokens per text (256, measured best: a fifth of Eedi queries pass 128 tokens; 0.276 against "
        "0.267 at 128, at about twice the seconds per step).",
    )
    max_steps: int | None = Field(None, ge=1, description="Cap on steps per round (a quick check); None: whole epochs.")
    save_steps: int = Field(25, ge=1, description="Checkpoint every this many steps (a killed run resumes there).")
    distill_from: str | None = Field(
        None,
        description="A CrossEncoder folder (mcqa train reranker): add a MarginMSE "
        "distillation stage towards its scores.",
    )


def catalogue_vectors(dataset: str, embedder) -> tuple[list[str], np.ndarray]:
    """(ids, one unit row per id) of the dataset's catalogue, through the agent's index cache: the base
    model's vectors are encoded once per machine, not once per run."""
    from mcqa.rag.cache import load_or_build_misconception_index

    index = load_or_build_misconception_index(dataset, embedder, progress=True)
    return [m.id for m in index.misconceptions], index.index.reconstruct_n(0, index.index.ntotal)


class Encoded:
    """One model's vectors of the catalogue (one row per id), the fit queries and the validation queries.

    Encoding dominates a round's cost, so each model encodes once: the same vectors score the model
    and mine the next round's negatives.
    """

    def __init__(self, model: str, pairs: list[dict], validation, misconceptions, config: Config):
        from mcqa.rag.embedder import Embedder
        from mcqa.rag.mining import catalogue_names
        from mcqa.rag.queries import labelled_pairs, query_format

        embedder = Embedder(model)
        self.ids, self.catalogue = catalogue_vectors(config.dataset, embedder)
        if self.ids != [m.id for m in misconceptions]:
            raise ValueError("the cached catalogue index is out of date: delete it from ~/.cache/mcqa/indexes")
        self.names = catalogue_names(misconceptions)
        first = {}
        for row, m in enumerate(misconceptions):
            first.setdefault(m.name, row)
        self.distinct = self.catalogue[list(first.values())]
        build = query_format(config.query_format)
        val_pairs = list(labelled_pairs(validation))
        self.validation_queries = embedder.encode_cached([build(i, x) for i, x, _ in val_pairs], "query")
        self.relevant = [ids for _, _, ids in val_pairs]
        self.embedder, self.pairs, self.validation = embedder, pairs, validation

    def score(self, k: int) -> dict:
        """MAP@k and Recall@k of the validation queries against the whole catalogue."""
        from mcqa.eval.metrics import map_at_k, recall_at_k

        rankings = self.rankings(k)
        return {
            f"map@{k}": round(map_at_k(rankings, self.relevant, k), 4),
            f"recall@{k}": round(recall_at_k(rankings, self.relevant, k), 4),
            "queries": len(rankings),
        }

    @functools.cached_property
    def fit_queries(self) -> np.ndarray:
        """Only a model that mines a next round needs these."""
        return self.embedder.encode_cached([p["query"] for p in self.pairs], "query")

    def mine(self, rank_min: int, rank_max: int, n: int, seed: int) -> list[dict]:
        """The fit pairs with `n` negatives drawn (seeded) from ranks [rank_min, rank_max) of this model."""
        from mcqa.rag.mining import mine_vectors

        return mine_vectors(
            self.pairs, self.fit_queries, self.names, self.distinct, rank_min, rank_max, n, "random", seed
        )

    def rankings(self, k: int) -> list[list[str]]:
        """The top-k catalogue ids of every validation query, best first."""
        return self.top(k)[0]

    def top(self, k: int) -> tuple[list[list[str]], list[list[float]]]:
        """(ids, similarities) of every validation query's top k, best first: the similarities are
        what a reranker's scores are fused with."""
        scores = self.validation_queries @ self.catalogue.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return ([[self.ids[j] for j in row] for row in order], np.take_along_axis(scores, order, axis=1).tolist())


def fit_round(
    start_from: str,
    rows: list[dict],
    out: Path,
    checkpoints: Path,
    config: Config,
    distill_labels: list[list[float]] | None = None,
) -> dict:
    """Train one round (or the distillation stage) from `start_from`, save to `out`; returns timing."""
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from mcqa.models import resolve
    from mcqa.rag.embedder import open_sentence_transformer

    model = open_sentence_transformer(str(resolve(start_from, "embedder")))
    model.max_seq_length = config.max_seq_length
    columns = {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    for i in range(config.negatives):
        columns[f"negative_{i + 1}"] = [r["negatives"][i] for r in rows]
    if distill_labels is not None:
        columns["label"] = distill_labels
        loss = losses.MarginMSELoss(model)
    elif config.cached:
        loss = losses.CachedMultipleNegativesRankingLoss(
            model, scale=config.scale, mini_batch_size=config.mini_batch_size
        )
    else:
        loss = losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        logging_steps=10,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    timer = step_timer()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(columns), loss=loss, callbacks=[timer]
    )
    trainer.train(resume_from_checkpoint=latest_checkpoint(checkpoints))
    model.save_pretrained(str(out))
    return timing(timer)


def distillation_labels(reranker: str, rows: list[dict]) -> list[list[float]]:
    """The CrossEncoder's margin score(q, positive) - score(q, negative_i) for every row and negative."""
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(reranker, device="cpu")
    texts = [(r["query"], p) for r in rows for p in [r["positive"], *r["negatives"]]]
    scores = model.predict(texts, batch_size=64, show_progress_bar=True).reshape(len(rows), -1)
    return [[float(row[0] - s) for s in row[1:]] for row in scores]


def train(config: Config, run: TrainRun) -> dict:
    """Mine, train and score `rounds` times (then distil, if asked); the last model goes to OUT/model."""
    from mcqa.rag.mining import read_jsonl, training_pairs, write_jsonl

    started = time.perf_counter()
    fit, validation, misconceptions = retrieval_data(config)
    pairs = training_pairs(fit, misconceptions, config.query_format)
    results = run.read_results() or {
        "recipe": "embedder",
        "fit_pairs": len(pairs),
        "validation_items": len(validation),
        "rounds": [],
    }
    current, encoded = config.base, None
    stages = [f"round-{r}" for r in range(config.rounds)] + (["distill"] if config.distill_from else [])
    for number, stage in enumerate(stages):
        out = run.path / stage / "model"
        if run.done(stage):
            current, encoded = str(out), None
            continue
        mined_path = run.path / stage / "mined.jsonl"
        if mined_path.exists():
            rows, mine_s = read_jsonl(mined_path), 0.0
        else:
            clock = time.perf_counter()
            miner = config.miner if number == 0 and config.miner else current
            encoded = encoded or Encoded(miner, pairs, validation, misconceptions, config)
            results.setdefault("base" if miner == current else "miner", encoded.score(config.k))
            rows = encoded.mine(config.rank_min, config.rank_max, config.negatives, config.seed + number)
            mine_s = round(time.perf_counter() - clock, 1)
            write_jsonl(rows, mined_path)
        labels = distillation_labels(config.distill_from, rows) if stage == "distill" else None
        stats = fit_round(current, rows, out, run.checkpoints / stage, config, labels)
        shutil.rmtree(run.checkpoints / stage, ignore_errors=True)
        current = str(out)
        clock = time.perf_counter()
        encoded = Encoded(current, pairs, validation, misconceptions, config)
        record = {
            "stage": stage,
            "pairs": len(rows),
            "mine_s": mine_s,
            **stats,
            "encode_s": round(time.perf_counter() - clock, 1),
            "model": current,
            "validation": encoded.score(config.k),
        }
        results["rounds"].append(record)
        run.write_results(results)
        run.mark_done(stage)
    final = run.path / "model"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(current, final)
    results.update(
        {
            "model": str(final),
            "total_s": round(time.perf_counter() - started, 1),
            "train_s": round(sum(r.get("train_s", 0) for r in results["rounds"]), 1),
        }
    )
    return results
