"""Recipe: an end-to-end fine-tuned sequence classifier for MAP (backbone + linear head).

Where `mcqa train classifier` fits a logistic regression on frozen MiniLM vectors, this one trains the
backbone too: the text of a response (question, the answer picked, whether that answer is the right
one, the student's explanation) goes through a transformer, its token states are pooled, and a linear
head scores the `Category:Misconception` labels less the True_/False_ half (the half follows from
correctness, which the input already says). Cross-entropy on `fit`; MAP@3 on `validation`, over all
labels and restricted to the labels `fit` gave responses to the same question with the same
correctness (`mcqa.rag.label_space`, what the medal solutions did).

Two kinds of backbone, one loop:
- an encoder (a sentence-transformers folder, `minilm-l6`): every weight trained, token states
  mean-pooled; trains on 2 CPU cores in about half an hour (finetune/configs/seqclass-map.yaml);
- an LLM (a registry name such as `qwen2.5-coder-1.5b`, a GGUF file, dequantized, or a transformers
  folder), as the competition's medal solutions did with 7-9B models: LoRA on its linear layers
  (`lora`, peft), the state of the last token pooled (a decoder's last token has read the whole text).
  This is a GPU recipe (a CUDA GPU, bf16 weights; finetune/configs/seqclass-map-llm.yaml): on 2 CPU
  cores a step of 16 responses takes 7.5 s with SmolLM2-135M and 139 s with the 1.5B model.
  peft serves both devices; unsloth's kernels target causal-LM fine-tuning, not a classification head.

Crash-safe: every `save_steps` optimizer steps, `OUT/checkpoints/last.pt` (the trained weights,
optimizer, scheduler, step, RNG state; with LoRA the frozen backbone is left out) is replaced
atomically; the same command again resumes from it, and a run whose steps are all done only scores and
saves. The batch order is a seeded permutation per epoch, so a resumed run sees the batches the killed
one would have.

Saved as `OUT/model/`: `encoder/` (transformers save_pretrained + tokenizer; LoRA merged in),
`head.pt` (the linear head's state dict), `head.npz` (the same as plain arrays) and `seqclass.json`
(labels, max_seq_length, base, pooling); `load_seqclass(folder)` reads it with torch, or with numpy
where torch is not installed (a mean-pooled BERT-style encoder). The agent adds its probabilities to
MAP's votes (`agent.seqclass`, weights from `mcqa train map-fusion`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mcqa.cli_common import progress_bar
from mcqa.finetune.common import TrainError, TrainRun, sample_limit
from mcqa.finetune.llm import LoraSettings

ENCODER_DIR, HEAD_FILE, META_FILE, CHECKPOINT = "encoder", "head.pt", "seqclass.json", "last.pt"
NUMPY_HEAD_FILE = "head.npz"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("map", description="MAP (labels are `Category:Misconception` of a student response).")
    base: str = Field(
        "minilm-l6",
        description="Backbone: an embedder (registry name or sentence-transformers folder; mean-pooled) or an LLM "
        "(registry name, GGUF file or transformers folder of a causal LM; last token pooled, give it `lora`).",
    )
    lora: LoraSettings | None = Field(
        None, description="LoRA on the backbone's linear layers (peft); None trains every weight (an encoder's way)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA where torch sees a GPU (an LLM backbone then loads in bf16), else CPU."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute the backbone's activations in the backward pass: less GPU memory, slower steps."
    )
    max_seq_length: int = Field(128, ge=16, le=512, description="Tokens per response text (longer ones are cut).")
    epochs: float = Field(1.5, gt=0, description="Passes over `fit` (a fraction stops part-way through the last).")
    lr: float = Field(1e-4, gt=0, description="AdamW peak learning rate (linear warm-up, then linear decay).")
    warmup: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(16, ge=1, description="Responses per optimizer step.")
    eval_batch_size: int = Field(64, ge=1, description="Responses per forward pass when scoring validation.")
    save_steps: int = Field(200, ge=1, description="Write a checkpoint every this many steps (and at the end).")
    fraction: float = Field(0.2, gt=0, lt=1, description="Share of train held out as validation (MAP: by row).")
    seed: int = Field(0, description="Seeds the split, the batch order and the head's initialisation.")
    fit_split: str = Field(
        "fit", description="Split trained on: `fit`, or `fit-inner` for a model whose fusion weights are chosen."
    )
    validation_split: str = Field(
        "validation", description="Split scored: `validation`, or `validation-inner` beside `fit-inner`."
    )
    limit: int | None = Field(None, ge=1, description="Use only this many fit and validation rows (a quick check).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (a quick check).")


def response_text(item, answer: str | None = None) -> str:
    """What the classifier reads: question, the answer picked, whether it is right, the explanation.
    `answer` is the right letter where the item has none (the agent's own answer)."""
    picked = item.choice(item.chosen) if item.chosen is not None else ""
    answer = item.answer or answer
    right = "unknown" if answer is None or item.chosen is None else str(item.chosen == answer)
    return (
        f"Question: {item.question.strip()}\nAnswer: {picked.strip()}\nCorrect: {right}\n"
        f"Explanation: {str(item.metadata.get('explanation', '')).strip()}"
    )


def response_label(item) -> str | None:
    """The item's label less the True_/False_ half (`Misconception:Incomplete`), or None if unlabelled."""
    from mcqa.datasets.map import label_parts

    label = item.metadata.get("label")
    return label_parts(label)[1] if label else None


def _threads() -> None:
    import torch

    if n := os.environ.get("MCQA_THREADS"):
        torch.set_num_threads(int(n))


def _is_causal_lm(base: str) -> bool:
    """Whether `base` names an LLM (registry kind `llm`, a GGUF file, a folder whose config is a causal LM)."""
    from mcqa.models import REGISTRY

    if base in REGISTRY:
        return REGISTRY[base].kind == "llm"
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        return True
    config = path / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    return any(a.endswith("ForCausalLM") for a in architectures)


def load_backbone(base: str, device: str = "cpu"):
    """(transformer, tokenizer, pooling) to start training from. An encoder is mean-pooled; an LLM drops
    its LM head, keeps its decoder (bf16 on CUDA, float32 on CPU) and is pooled at its last token, with
    right padding so that the last token is at `attention_mask.sum() - 1`."""
    from transformers import AutoModel, AutoTokenizer

    from mcqa.models import resolve

    if not _is_causal_lm(base):
        folder = resolve(base, "embedder")
        encoder = AutoModel.from_pretrained(folder, local_files_only=True)
        return encoder, AutoTokenizer.from_pretrained(folder, local_files_only=True), "mean"
    from mcqa.llm.hf import load_hf_causal_lm

    lm, tokenizer = load_hf_causal_lm(base, "bfloat16" if device == "cuda" else "float32")
    tokenizer.padding_side = "right"
    decoder = lm.get_decoder()
    decoder.config.use_cache = False  # no key-value cache: one forward pass per batch
    return decoder, tokenizer, "last"


def _network(encoder, n_labels: int, pooling: str = "mean"):
    import torch
    from torch import nn

    if pooling not in ("mean", "last"):
        raise ValueError(f"pooling must be mean or last, got {pooling!r}")

    class Network(nn.Module):
        """Transformer -> its token states pooled (mean of the unpadded ones, or the last) -> linear head
        (float32 logits over labels, whatever the transformer's dtype)."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(encoder.config.hidden_size, n_labels)

        def forward(self, input_ids, attention_mask, **extra):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            if pooling == "last":
                rows = torch.arange(len(states), device=states.device)
                pooled = states[rows, attention_mask.sum(1) - 1]
            else:
                mask = attention_mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.head(pooled.float())

    torch.manual_seed(0)  # callers reseed; this keeps a bare construction deterministic too
    return Network()


class SeqClassifier:
    """A trained (or training) encoder + head with its label list; `predict` gives probabilities."""

    def __init__(self, network, tokenizer, labels: list[str], meta: dict, device: str = "cpu"):
        self.network, self.tokenizer, self.labels, self.meta = network, tokenizer, labels, meta
        self.device = device

    def batch(self, texts: list[str]):
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.meta["max_seq_length"], return_tensors="pt"
        )
        return {key: value.to(self.device) for key, value in tokens.items()}

    def predict(self, items, answers=None, batch_size: int = 64):
        """Softmax probabilities (numpy, one row per item, columns in `self.labels` order). `answers`: the
        right letter per item where the item has none."""
        import numpy as np
        import torch

        texts = [response_text(item, a) for item, a in zip(items, answers or [None] * len(items), strict=True)]
        self.network.eval()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.batch(texts[start : start + batch_size])
                rows.append(torch.softmax(self.network(**batch), dim=-1).float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)

    def save(self, folder: Path) -> Path:
        import torch

        folder = Path(folder)
        (folder / ENCODER_DIR).mkdir(parents=True, exist_ok=True)
        if hasattr(self.network.encoder, "merge_and_unload"):  # LoRA folded in: the backbone loads without peft
            self.network.encoder = self.network.encoder.merge_and_unload()
        self.network.encoder.save_pretrained(folder / ENCODER_DIR)
        self.tokenizer.save_pretrained(folder / ENCODER_DIR)
        torch.save(self.network.head.state_dict(), folder / HEAD_FILE)
        write_numpy_head(folder)
        (folder / META_FILE).write_text(json.dumps({**self.meta, "labels": self.labels}, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, device: str = "auto") -> SeqClassifier:
        """The saved model, on CUDA where torch sees a GPU (`auto`), else on CPU in float32."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder).expanduser()
        if not (folder / META_FILE).is_file() or not (folder / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not a trained seqclass model (train one with `mcqa train seqclass`)")
        meta = json.loads((folder / META_FILE).read_text())
        labels = meta.pop("labels")
        device = pick_device(device)
        encoder = AutoModel.from_pretrained(folder / ENCODER_DIR, local_files_only=True)
        encoder = encoder.to(device) if device == "cuda" else encoder.float()
        tokenizer = AutoTokenizer.from_pretrained(folder / ENCODER_DIR, local_files_only=True)
        tokenizer.padding_side = "right"  # last-token pooling reads the state at attention_mask.sum() - 1
        network = _network(encoder, len(labels), meta.get("pooling", "mean"))
        network.head.load_state_dict(torch.load(folder / HEAD_FILE, weights_only=True))
        return cls(network.to(device), tokenizer, labels, meta, device)


def pick_device(wanted: str) -> str:
    """`cuda` or `cpu`: `auto` takes CUDA where torch sees a GPU; `cuda` without one is an error."""
    import torch

    if wanted not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {wanted!r}")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda: torch sees no GPU here; use device cpu or auto")
    return "cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu"


def write_numpy_head(folder: Path) -> Path:
    """`head.npz` (weight, bias: plain arrays) beside `head.pt`, for NumpySeqClassifier, which runs
    without torch (a Kaggle bundle installs only the `embed` extra)."""
    import numpy as np
    import torch

    state = torch.load(Path(folder) / HEAD_FILE, weights_only=True)
    path = Path(folder) / NUMPY_HEAD_FILE
    np.savez(path, weight=state["weight"].float().numpy(), bias=state["bias"].float().numpy())
    return path


class NumpySeqClassifier:
    """A trained seqclass model run with numpy: the fine-tuned encoder through mcqa.rag.numpy_encoder
    (mean-pooled, not normalised, as the network pools) and the head from `head.npz`. It needs only the
    `embed` extra, so the MAP Kaggle bundle ships no torch; probabilities match the torch model's to
    float precision (tests/test_finetune_seqclass.py)."""

    def __init__(self, folder: Path):
        import numpy as np

        from mcqa.rag.numpy_encoder import NumpyEncoder

        folder = Path(folder).expanduser()
        meta = json.loads((folder / META_FILE).read_text())
        self.labels, self.meta = meta.pop("labels"), meta
        self.encoder = NumpyEncoder(folder / ENCODER_DIR)
        self.encoder.max_length = meta["max_seq_length"]
        self.encoder.tokenizer.enable_truncation(max_length=meta["max_seq_length"])
        head = np.load(folder / NUMPY_HEAD_FILE)
        self.weight, self.bias = head["weight"], head["bias"]

    def predict(self, items, answers=None, batch_size: int = 64):
        """As SeqClassifier.predict."""
        import numpy as np

        texts = [response_text(item, a) for item, a in zip(items, answers or [None] * len(items), strict=True)]
        logits = self.encoder.encode(texts, batch_size, normalize=False) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


def load_seqclass(folder, backend: str | None = None):
    """The trained model in `folder` to predict with: SeqClassifier (torch) or NumpySeqClassifier, chosen
    as the embedder's backend is (mcqa.rag.embedder.choose_backend: torch where installed, else numpy;
    $MCQA_EMBEDDER_BACKEND forces one)."""
    from mcqa.rag.embedder import choose_backend

    folder = Path(folder).expanduser()
    if not (folder / META_FILE).is_file() or not (folder / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a trained seqclass model (train one with `mcqa train seqclass`)")
    if choose_backend(folder / ENCODER_DIR, backend, "the seqclass model") == "numpy":
        if not (folder / NUMPY_HEAD_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {NUMPY_HEAD_FILE}: the numpy backend reads the head from it")
        return NumpySeqClassifier(folder)
    return SeqClassifier.load(folder)


def _with_lora(encoder, lora: LoraSettings):
    """The backbone wrapped by peft with LoRA on `lora.target_modules` (only the adapters train)."""
    from mcqa.extras import require

    require("peft", "train", "a seqclass backbone with `lora`")
    from peft import LoraConfig, get_peft_model

    settings = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias="none",
    )
    return get_peft_model(encoder, settings)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then an atomic rename: a kill mid-write leaves the old checkpoint."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _schedule(total: int, warmup: float):
    steps = max(1, math.ceil(total * warmup))

    def factor(step: int) -> float:
        if step < steps:
            return (step + 1) / steps
        return max(0.0, (total - step) / max(1, total - steps))

    return factor


def evaluate(model: SeqClassifier, fit, validation, batch_size: int) -> dict:
    """MAP@3 on validation, unrestricted and restricted to fit's labels for the same question and
    correctness (`LabelSpace`), and responses scored per second."""
    from mcqa.datasets.map import full_label
    from mcqa.eval.metrics import map_at_k
    from mcqa.rag.label_space import LabelSpace, restrict_labels
    from mcqa.rag.queries import query_format
    from mcqa.rag.store import label_records

    items = [item for item in validation if response_label(item) is not None]
    clock = time.perf_counter()
    probs = model.predict(items, batch_size=batch_size)
    seconds = time.perf_counter() - clock
    space = LabelSpace(label_records(fit, query_format("subject_correct")))

    def full(item, labels):
        return [full_label(item.chosen == item.answer, x) for x in labels]

    gold = [full(item, [response_label(item)]) for item in items]
    plain, restricted = [], []
    for item, row in zip(items, probs, strict=True):
        ranked = sorted(zip(model.labels, map(float, row), strict=True), key=lambda hit: -hit[1])
        plain.append(full(item, [label for label, _ in ranked]))
        kept = restrict_labels(ranked, space.allowed(item, item.answer))
        restricted.append(full(item, [label for label, _ in kept]))
    return {
        "validation_answers": len(items),
        "validation": {
            "map@3": {
                "restricted": round(map_at_k(restricted, gold, 3), 4),
                "unrestricted": round(map_at_k(plain, gold, 3), 4),
            }
        },
        "inference_s": round(seconds, 2),
        "responses_per_s": round(len(items) / seconds, 1) if seconds > 0 else None,
    }


def train(config: Config, run: TrainRun) -> dict:
    import random

    import torch

    from mcqa.rag.splits import load_items

    if config.dataset != "map":
        raise TrainError(f"seqclass trains on MAP's student responses, not {config.dataset!r}")
    _threads()
    started = time.perf_counter()
    fit = load_items(config.dataset, config.fit_split, fraction=config.fraction, seed=config.seed)
    validation = load_items(config.dataset, config.validation_split, fraction=config.fraction, seed=config.seed)
    rng = random.Random(config.seed)
    fit, validation = (sample_limit(items, config.limit, rng) for items in (fit, validation))
    fit = [item for item in fit if response_label(item) is not None]
    labels = sorted({response_label(item) for item in fit})
    if len(labels) < 2:
        raise TrainError(f"a classifier needs at least 2 labels, the fit rows have {len(labels)}")
    index = {label: n for n, label in enumerate(labels)}
    texts = [response_text(item) for item in fit]
    targets = torch.tensor([index[response_label(item)] for item in fit])

    if config.lora is None and _is_causal_lm(config.base):
        raise TrainError(f"{config.base} is an LLM: give `lora` (training all its weights does not fit in memory)")
    device = pick_device(config.device)
    encoder, tokenizer, pooling = load_backbone(config.base, device)
    if config.gradient_checkpointing:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(config.seed)
    network = _network(encoder, len(labels), pooling)
    torch.manual_seed(config.seed)
    network.head.reset_parameters()
    if config.lora is not None:
        network.encoder = _with_lora(encoder, config.lora)
    network.to(device)
    meta = {"dataset": config.dataset, "base": config.base, "max_seq_length": config.max_seq_length}
    meta |= {"pooling": pooling, "lora": config.lora.model_dump() if config.lora else None}
    model = SeqClassifier(network, tokenizer, labels, meta, device)
    trained = {name: p for name, p in network.named_parameters() if p.requires_grad}  # with LoRA: adapters, head

    per_epoch = math.ceil(len(fit) / config.batch_size)
    total = math.ceil(per_epoch * config.epochs)
    if config.max_steps:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(list(trained.values()), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, config.warmup))

    checkpoint = run.checkpoints / CHECKPOINT
    step, train_s, losses = 0, 0.0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        if state["labels"] != labels:
            raise TrainError(f"{checkpoint} was trained on other labels; use --force to start over")
        missing, unexpected = network.load_state_dict(state["model"], strict=False)
        if unexpected or set(missing) & trained.keys():
            raise TrainError(f"{checkpoint} holds another network's weights; use --force to start over")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, train_s, losses = state["step"], state["train_s"], state["losses"]
    resumed_from = step

    def save(step: int) -> None:
        save_checkpoint(
            checkpoint,
            {
                # the trained weights only: with LoRA, the frozen backbone is the base's and reloads from it
                "model": {k: v for k, v in network.state_dict().items() if k in trained},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "step": step,
                "train_s": train_s,
                "losses": losses,
                "labels": labels,
            },
        )

    network.train()
    step_seconds = []
    with progress_bar() as bar:  # on stderr, with the loss, elapsed time and ETA (off when stderr is no terminal)
        task = bar.add_task("training", total=total, completed=step, rate="")
        while step < total:
            epoch, position = divmod(step, per_epoch)
            order = torch.randperm(len(fit), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            rows = order[position * config.batch_size : (position + 1) * config.batch_size].tolist()
            clock = time.perf_counter()
            logits = network(**model.batch([texts[n] for n in rows]))
            loss = torch.nn.functional.cross_entropy(logits, targets[rows].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trained.values()), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_seconds.append(time.perf_counter() - clock)
            train_s += step_seconds[-1]
            losses.append(round(float(loss.detach()), 4))
            bar.update(task, advance=1, rate=f"loss {losses[-1]:.3f}")
            if step % config.save_steps == 0 or step == total:
                save(step)
    ordered = sorted(step_seconds)
    scores = evaluate(model, fit, validation, config.eval_batch_size)
    out = model.save(run.path / "model")
    return {
        "recipe": "seqclass",
        "base": config.base,
        "device": device,
        "trained_parameters": sum(p.numel() for p in trained.values()),
        "fit_answers": len(fit),
        "labels": len(labels),
        "steps": step,
        "total_steps": total,
        "resumed_from_step": resumed_from,
        "steps_run": step - resumed_from,
        "median_step_s": round(ordered[len(ordered) // 2], 3) if ordered else None,
        "train_s": round(train_s, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        **scores,
        "model": str(out),
        "total_s": round(time.perf_counter() - started, 1),
    }
