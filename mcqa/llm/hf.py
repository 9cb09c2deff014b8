"""Load a registry LLM (a GGUF file) or a safetensors folder as a transformers model.

Training (LoRA SFT) and conversion for vLLM both need the model in transformers form, and the
embedded models only ship as GGUF. transformers dequantizes a GGUF on load but keeps its GGUF
quantizer attached, so `save_pretrained` and `Trainer` refuse the model until the quantization
config is removed (FACTS.md); this module is the one place that knows it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hf_source(model: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a registry name, a GGUF path or a transformers folder."""
    from mcqa.models import resolve

    path = resolve(model, "llm")
    if path.is_file():
        return path.parent, path.name
    return path, None


def load_hf_causal_lm(model: str, dtype: str = "float32"):
    """(model, tokenizer) ready to train or save; GGUF weights are dequantized to `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = hf_source(model)
    kwargs = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), **kwargs)
    quantizer = getattr(hf_model, "hf_quantizer", None)
    if gguf and quantizer is not None:
        quantizer.remove_quantization_config(hf_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return hf_model, tokenizer
