"""Recipe: LoRA SFT of the LLM on the agent's own prompts, with the loss on the answer only.

Three tasks, each built with the chat builders the agent uses at inference (mcqa.agent.prompts), so
the tuned model sees exactly the prompts it will be asked:
- `answer`: the answer chat (zero-shot) -> the gold letter, the token `score_options` reads;
- `rerank`: the Yes/No rerank chat for a wrong answer and a candidate misconception -> "Yes" for a
  labelled one, "No" for a negative (random catalogue entries, seeded, or the hard negatives of
  `mcqa mine`); the agent's `reranker: llm` scores P(Yes);
- `think`: the think chat -> a teacher's short explanation (`mcqa train think-data`).

Examples are conversational prompt-completion pairs. On CPU, peft + TRL's SFTTrainer train them with
`completion_only_loss` (the prompt tokens are masked), the same masking unsloth's
`train_on_responses_only` does; with CUDA and unsloth installed, unsloth loads the base in 4 bit and
applies that function on ChatML markers (`pick_backend`). Examples longer than `max_seq_len` are
dropped and counted, never truncated (truncation would cut the answer off the end).

Outputs in the run folder: `adapter/` (peft), and per `export`: `adapter.gguf` (a GGUF LoRA for
llama.cpp: `llm.lora: OUT/adapter.gguf` on the same base GGUF) and `merged/` (safetensors for vLLM).
results.json: examples, eval loss on held-out examples before and after, seconds per step (`timing`: the
steps of the last invocation; `progress`: written at each checkpoint, so a killed run keeps its figures), total.
"""

from __future__ import annotations

import importlib.util
import json
import random
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mcqa.finetune.common import TrainError, TrainRun, latest_checkpoint, step_timer, timing

TASKS = ("answer", "rerank", "think")
CHATML_USER, CHATML_ASSISTANT = "<|im_start|>user\n", "<|im_start|>assistant\n"


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale alpha/r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear layers adapted (every one of them: the GGUF export maps each to llama.cpp's name).",
    )


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field("qwen2.5-coder-1.5b", description="Base: registry name, GGUF path or transformers folder.")
    task: Literal["answer", "rerank", "think"] = Field("answer", description="What the model learns (see above).")
    datasets: list[str] = Field(["codemmlu_fpt"], description="answer: labelled datasets; rerank: eedi and/or map.")
    split: str = Field("fit", description="Split trained on; `fit` is the train split minus the `validation` side.")
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of train questions held out as `validation`.")
    think_data: str | None = Field(None, description="think: the JSONL of `mcqa train think-data`.")
    hard_negatives: str | None = Field(None, description="rerank: a `mcqa mine` JSONL; its negatives come first.")
    negatives: int = Field(1, ge=1, description="rerank: 'No' examples per labelled misconception.")
    max_items: int | None = Field(2000, ge=1, description="Cap on training examples (a seeded sample).")
    eval_items: int = Field(32, ge=0, description="Held-out examples (from `validation`) scored before and after.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (None: whole epochs).")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps per optimizer step.")
    max_seq_len: int = Field(512, ge=32, description="Longer examples are dropped (counted in results.json).")
    seed: int = Field(0, description="Seeds the split, the sampling of examples and negatives, and training.")
    save_steps: int = Field(10, ge=1, description="Checkpoint every this many steps (a killed run resumes there).")
    backend: Literal["auto", "unsloth", "peft"] = Field(
        "auto", description="auto: unsloth when CUDA and unsloth are there, else peft + TRL (CPU)."
    )
    export: list[Literal["gguf_lora", "merged"]] = Field(
        ["gguf_lora"], description="gguf_lora: OUT/adapter.gguf for llama.cpp; merged: OUT/merged/ for vLLM."
    )


# -- data ----------------------------------------------------------------------------------------
def _example(prompt: list[dict], completion: str, **meta) -> dict:
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}], **meta}


def answer_examples(items) -> list[dict]:
    from mcqa.agent.prompts import Prompts, base_chat

    prompts = Prompts()
    return [_example(base_chat(it, [], prompts), it.answer, item_id=it.id) for it in items if it.answer]


def rerank_examples(
    items, catalogue, negatives: int, rng: random.Random, hard: dict[tuple[str, str], list[str]] | None = None
) -> list[dict]:
    """Per labelled wrong answer: 'Yes' for each label, `negatives` x 'No' (hard ones first if given)."""
    from mcqa.agent.prompts import Prompts, rerank_chat
    from mcqa.rag.queries import labelled_pairs

    prompts, names = Prompts(), {m.id: m.name for m in catalogue}
    ids = sorted(names)
    out = []
    for item, letter, labels in labelled_pairs(items):
        for mid in labels:
            if mid not in names:
                continue
            out.append(_example(rerank_chat(item, letter, names[mid], prompts), "Yes", item_id=item.id))
            pool = [n for n in (hard or {}).get((item.id, letter), []) if n not in labels and n in names]
            chosen = pool[:negatives]
            while len(chosen) < negatives:
                candidate = rng.choice(ids)
                if candidate not in labels and candidate not in chosen:
                    chosen.append(candidate)
            out += [_example(rerank_chat(item, letter, names[n], prompts), "No", item_id=item.id) for n in chosen]
    return out


def think_examples(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [
        _example(r["prompt"], r["explanation"].strip(), item_id=r["item_id"]) for r in rows if r["explanation"].strip()
    ]


def build_examples(config: Config, split: str) -> list[dict]:
    """The examples of `split` (fit or validation) for the config's task, in a seeded order."""
    from mcqa.rag.splits import load_items

    rng = random.Random(config.seed)
    if config.task == "think":
        if not config.think_data:
            raise TrainError("task think needs think_data (a JSONL from `mcqa train think-data`)")
        examples = think_examples(Path(config.think_data))
        # held-out examples for the eval loss: the last ones of a seeded shuffle, never trained on
        rng.shuffle(examples)
        cut = max(1, len(examples) // 10) if config.eval_items else 0
        return examples[cut:] if split == config.split else examples[:cut]
    examples: list[dict] = []
    for name in config.datasets:
        items = load_items(name, split, fraction=config.fraction, seed=config.seed)
        if config.task == "answer":
            examples += answer_examples(items)
        else:
            from mcqa.datasets import load_misconceptions

            hard = _hard_negatives(Path(config.hard_negatives)) if config.hard_negatives else None
            examples += rerank_examples(items, load_misconceptions(name), config.negatives, rng, hard)
    rng.shuffle(examples)
    return examples


def _hard_negatives(path: Path) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.setdefault((row["item_id"], row["letter"]), []).extend(row.get("negative_ids", []))
    return out


def fit_length(examples: list[dict], tokenizer, max_len: int, limit: int | None = None) -> tuple[list[dict], int]:
    """(the first `limit` examples whose prompt+completion fits `max_len` tokens, how many were dropped on the way)."""
    kept, dropped = [], 0
    for ex in examples:
        if limit is not None and len(kept) >= limit:
            break
        if len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True)) <= max_len:
            kept.append(ex)
        else:
            dropped += 1
    return kept, dropped


# -- backend -------------------------------------------------------------------------------------
def pick_backend(requested: str, cuda: bool | None = None, unsloth: bool | None = None) -> str:
    """`unsloth` on a CUDA machine with unsloth installed (or when asked for, which then must hold), else `peft`."""
    if requested == "peft":
        return "peft"
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if unsloth is None:
        unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "unsloth" and not (cuda and unsloth):
        raise TrainError(
            "backend unsloth needs CUDA and the unsloth package"
            f" (cuda: {cuda}, unsloth installed: {unsloth}); use backend peft or auto"
        )
    return "unsloth" if cuda and unsloth else "peft"


def _peft_model(config: Config):
    from mcqa.extras import require

    require("peft", "train", "mcqa train llm (LoRA with peft)")
    from peft import LoraConfig

    from mcqa.llm.hf import load_hf_causal_lm

    model, tokenizer = load_hf_causal_lm(config.base, "float32")
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return model, tokenizer, lora


def _unsloth_model(config: Config, run: TrainRun):
    """unsloth's 4-bit base with its LoRA (GPU only). A GGUF base is dequantized to a folder first."""
    import unsloth  # noqa: F401  (must come before transformers/trl to patch them)
    from unsloth import FastLanguageModel

    from mcqa.llm.hf import hf_source, load_hf_causal_lm

    folder, gguf = hf_source(config.base)
    if gguf:
        folder = run.path / "base-hf"
        if not (folder / "config.json").exists():
            model, tokenizer = load_hf_causal_lm(config.base, "bfloat16")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            del model
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(folder), max_seq_length=config.max_seq_len, dtype=None, load_in_4bit=True
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=config.seed,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# -- training ------------------------------------------------------------------------------------
def train(config: Config, run: TrainRun, callbacks: list | None = None) -> dict:
    """Build the examples, train (resuming from the newest checkpoint), save the adapter, export."""
    results: dict = {"task": config.task, "base": config.base}
    adapter = run.path / "adapter"
    if not run.done("train"):
        results |= _train(config, run, adapter, callbacks or [])
        run.write_results(results)
        run.mark_done("train")
    artifacts = {"adapter": str(adapter)}
    for kind in config.export:
        started = time.perf_counter()
        if kind == "gguf_lora":
            from mcqa.finetune.export import export_gguf_lora

            target = run.path / "adapter.gguf"
            if not run.done("gguf_lora"):
                export_gguf_lora(adapter, config.base, target)
        else:
            from mcqa.finetune.export import merge_adapter

            target = run.path / "merged"
            if not run.done("merged"):
                merge_adapter(config.base, adapter, target)
        if not run.done(kind):
            results[f"export_{kind}_s"] = round(time.perf_counter() - started, 1)
            run.mark_done(kind)
        artifacts[kind] = str(target)
    results["artifacts"] = artifacts
    results["total_s"] = round(time.perf_counter() - run.started, 1)
    return results


def _train(config: Config, run: TrainRun, adapter: Path, callbacks: list) -> dict:
    backend = pick_backend(config.backend)
    started = time.perf_counter()
    if backend == "unsloth":
        model, tokenizer = _unsloth_model(config, run)
        lora = None
    else:
        model, tokenizer, lora = _peft_model(config)
    load_s = time.perf_counter() - started

    examples, dropped = fit_length(
        build_examples(config, config.split), tokenizer, config.max_seq_len, config.max_items
    )
    held_out = []
    if config.eval_items:
        held_out, _ = fit_length(build_examples(config, "validation"), tokenizer, config.max_seq_len, config.eval_items)
    if not examples:
        raise TrainError(f"no training examples for task {config.task} (dropped as too long: {dropped})")

    from mcqa.extras import require

    require("trl", "train", "mcqa train llm (TRL's SFTTrainer)")
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        warmup_steps=0.05,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        max_length=None,
        packing=False,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        eval_strategy="no",
        # unsloth masks on the rendered text (train_on_responses_only); TRL masks prompt-completion pairs
        completion_only_loss=backend == "peft",
        dataset_text_field="text",
    )

    def as_dataset(rows: list[dict]):
        if backend == "unsloth":
            return Dataset.from_list(
                [{"text": tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)} for r in rows]
            )
        return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])

    timer = step_timer()
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """At each checkpoint, the step times so far go to results.json: a killed run keeps its figures."""

        def on_save(self, args, state, control, **kwargs):
            run.write_results({"progress": {"global_step": state.global_step, "timing": timing(timer)}})

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=as_dataset(examples),
        eval_dataset=as_dataset(held_out) if held_out else None,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[timer, Progress(), *callbacks],
    )
    if backend == "unsloth":
        from unsloth.chat_templates import train_on_responses_only

        trainer = train_on_responses_only(trainer, instruction_part=CHATML_USER, response_part=CHATML_ASSISTANT)

    resume = latest_checkpoint(run.checkpoints)
    before = trainer.evaluate()["eval_loss"] if held_out and resume is None else None
    if before is not None:  # kept even if training is killed (results.json merges what each invocation adds)
        run.write_results({"eval_loss_before": round(before, 4)})
    output = trainer.train(resume_from_checkpoint=resume)
    after = trainer.evaluate()["eval_loss"] if held_out else None
    trainer.model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    results = {
        "backend": backend,
        "examples": len(examples),
        "dropped_too_long": dropped,
        "eval_examples": len(held_out),
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "train_loss": round(output.training_loss, 4),
        "load_s": round(load_s, 1),
        "timing": timing(timer),
        "train_total_s": round(time.perf_counter() - started, 1),
        "examples_per_step": config.batch_size * config.grad_accum,
    }
    if after is not None:
        results["eval_loss_after"] = round(after, 4)
    return results
