"""GGUF (or base + fine-tuned LoRA adapter) -> the safetensors folder vLLM loads.

vLLM cannot read GGUF on CPU (its GGUF path needs CUDA), and on GPU it serves a folder faster and
with more options (quantization, LoRA, tensor parallel). transformers dequantizes the GGUF
(`mcqa.llm.hf`); the folder gets the weights, the config, the tokenizer with its chat template, and
a `mcqa-convert.json` that says where it came from. A peft adapter is merged into the weights, so
the folder serves without LoRA support (use `llm.lora` instead to keep the adapter separate).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")


class ConvertError(ValueError):
    """A source that cannot be converted, said in one line."""


def convert(
    model: str, out: Path | str, adapter: Path | str | None = None, dtype: str = "bfloat16", overwrite: bool = False
) -> Path:
    """Write `model` (registry name, GGUF path or transformers folder), with `adapter` merged if given,
    as a safetensors folder at `out`; returns `out`. Written to a temporary folder first and renamed,
    so an interrupted conversion never leaves a half folder that looks complete."""
    if dtype not in DTYPES:
        raise ConvertError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConvertError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
    if adapter is not None and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
        raise ConvertError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")

    from mcqa.extras import check
    from mcqa.llm.hf import hf_source, load_hf_causal_lm

    check("train", "converting a model (transformers, torch, gguf, peft)")
    started = time.perf_counter()
    folder, gguf = hf_source(model)
    import torch

    hf_model, tokenizer = load_hf_causal_lm(model, dtype="float32")  # merged in full precision, then cast
    if adapter is not None:
        from peft import PeftModel

        hf_model = PeftModel.from_pretrained(hf_model, str(Path(adapter).expanduser())).merge_and_unload()
    hf_model = hf_model.to(getattr(torch, dtype))
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    hf_model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "mcqa-convert.json").write_text(
        json.dumps(
            {
                "source": str(folder / gguf) if gguf else str(folder),
                "adapter": str(adapter) if adapter else None,
                "dtype": dtype,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
