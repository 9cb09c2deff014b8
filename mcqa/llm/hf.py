"""Load a registry LLM (a GGUF file) or a safetensors folder as a transformers model.

Training (LoRA SFT) and conversion for vLLM both need the model in transformers form, and the
embedded models only ship as GGUF. transformers dequantizes a GGUF on load but keeps its GGUF
quantizer attached, so `save_pretrained` and `Trainer` refuse the model until the quantization
config is removed (FACTS.md); this module is the one place that knows it.

The tokenizer and config of a GGUF are cached, converted, in `cache_dir()/hf-gguf/` (one folder per
GGUF file, keyed by its resolved path, size and mtime and by the transformers and tokenizers
versions, so a changed file or library converts again). transformers reads GGUF metadata in pure
Python: for SmolLM2-135M on one thread `AutoTokenizer.from_pretrained(gguf_file=)` takes ~5 s and
`AutoConfig.from_pretrained(gguf_file=)` ~4.3 s, where the saved tokenizer reloads in 0.3 s with
identical files, ids and chat template. Handing the cached config to
`AutoModelForCausalLM.from_pretrained` also skips its own config parse (~4.8 s), with identical
logits: `load_hf_causal_lm` went from ~18 s to ~10.5 s once cached. The rest is the weights (the
GGUF tensor read and dequantization), which are not cached: fp32 would be ~6 GB on disk for the 1.5B.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_CACHE_LAYOUT = 1  # bump when what the cache folder holds changes
_COMPLETE = "mcqa-gguf-source.json"  # written last, before the rename: a folder without it is not used


def hf_source(model: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a registry name, a GGUF path or a transformers folder."""
    from mcqa.models import resolve

    path = resolve(model, "llm")
    if path.is_file():
        return path.parent, path.name
    return path, None


def gguf_cache_folder(gguf_path: Path) -> Path:
    """Where the converted tokenizer and config of `gguf_path` are cached (it may not exist yet)."""
    import tokenizers
    import transformers

    from mcqa.config import cache_dir

    path = Path(gguf_path).resolve()
    stat = path.stat()
    source = {
        "path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "layout": _CACHE_LAYOUT,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    key = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "hf-gguf" / f"{path.stem}-{key}"


def _gguf_tokenizer_and_config(folder: Path, gguf: str):
    """(tokenizer, config) of a GGUF, from the cache when it has them, else converted and cached.

    The cache is written to a temporary folder beside its final place and renamed, so a crash never
    leaves a half cache; if it cannot be written (read-only disk) the converted objects are still returned.
    """
    from transformers import AutoConfig, AutoTokenizer

    try:
        cached = gguf_cache_folder(folder / gguf)
    except OSError:
        cached = None
    if cached is not None and (cached / _COMPLETE).is_file():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        config = AutoConfig.from_pretrained(cached)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        config = AutoConfig.from_pretrained(folder, gguf_file=gguf)
        if cached is not None:
            _write_cache(cached, tokenizer, config, folder / gguf)
    tokenizer.name_or_path = str(folder)  # as if read from the GGUF itself
    config.name_or_path = str(folder)
    return tokenizer, config


def _write_cache(cached: Path, tokenizer, config, gguf_path: Path) -> None:
    partial = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.parent / f".{cached.name}.{os.getpid()}.{secrets.token_hex(4)}.partial"
        partial.mkdir()  # not mkdtemp: its 0700 would keep the cache from other users
        tokenizer.save_pretrained(partial)
        config.save_pretrained(partial)
        (partial / _COMPLETE).write_text(json.dumps({"gguf": str(gguf_path.resolve())}, indent=2) + "\n")
        try:
            partial.rename(cached)  # atomic; fails if another process renamed its copy first
        except OSError:
            if not (cached / _COMPLETE).is_file():
                shutil.rmtree(cached, ignore_errors=True)  # not a finished cache: replace it
                partial.rename(cached)
    except OSError:
        pass  # the cache only saves time
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def load_hf_config(model: str):
    """The transformers config of a registry name, GGUF path or folder (a GGUF's from the cache)."""
    folder, gguf = hf_source(model)
    if gguf:
        return _gguf_tokenizer_and_config(folder, gguf)[1]
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def load_hf_causal_lm(model: str, dtype: str = "float32"):
    """(model, tokenizer) ready to train or save; GGUF weights are dequantized to `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = hf_source(model)
    if gguf:
        tokenizer, config = _gguf_tokenizer_and_config(folder, gguf)
        hf_model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf, config=config, dtype=getattr(torch, dtype)
        )
        quantizer = getattr(hf_model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(hf_model)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return hf_model, tokenizer
