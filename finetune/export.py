"""Export a trained LoRA adapter for the two runtimes: merged weights for vLLM, a GGUF adapter for llama.cpp.

- `merge_adapter(base, adapter, out)`: the base model with the adapter folded in (`merge_and_unload`),
  saved as a safetensors folder with its tokenizer; vLLM (or transformers) loads it like any model.
- `export_gguf_lora(adapter, base, out)`: the adapter as a GGUF LoRA file, the format llama.cpp's
  `convert_lora_to_gguf.py` writes, so the CPU default serves the *quantized* base GGUF plus the
  adapter (`llm.lora: out`), no re-quantization. Written here with the `gguf` package (PyPI) because
  llama.cpp's converter scripts are not on PyPI.

The GGUF layout (as in llama.cpp's converter): `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted weight `W` of the base GGUF two f32 tensors `W.lora_a`
(peft's lora_A, rank x in) and `W.lora_b` (lora_B, out x rank); llama.cpp adds
`alpha / rank * b @ a @ x`. Llama-architecture GGUFs store q/k rows permuted for their rotary
layout (convert_hf_to_gguf's `LlamaModel.permute`; transformers undoes it on load), so the rows of
lora_b for q_proj/k_proj are permuted the same way; qwen2 GGUFs are not permuted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# GGUF architectures whose q/k weights convert_hf_to_gguf permutes (LlamaModel and its subclasses).
PERMUTED_QK = {"llama", "mistral"}


def merge_adapter(base: str, adapter: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Base model (registry name, GGUF or folder) + peft adapter folder -> merged safetensors folder
    (`mcqa convert --adapter`, the one conversion path)."""
    from mcqa.llm.convert import convert

    return convert(base, out, adapter=adapter, dtype=dtype, overwrite=True)


def _permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute on the output rows (lora_b's first axis)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def base_gguf_arch(base: str) -> str:
    """The `general.architecture` of the GGUF the adapter will be applied to (or the folder's model_type)."""
    from mcqa.llm.hf import hf_source

    folder, gguf_name = hf_source(base)
    if gguf_name:
        from gguf import GGUFReader

        field = GGUFReader(str(folder / gguf_name)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    return json.loads((folder / "config.json").read_text())["model_type"]


def export_gguf_lora(adapter: Path, base: str, out: Path, base_config: dict | None = None) -> Path:
    """A peft LoRA folder -> a GGUF LoRA adapter for `base` (a registry name, GGUF path or folder).

    `base_config`: the base model's HF config as a dict (read from the adapter's base otherwise).
    """
    import gguf
    from safetensors.numpy import load_file

    adapter = Path(adapter)
    lora_config = json.loads((adapter / "adapter_config.json").read_text())
    if lora_config.get("use_rslora") or lora_config.get("use_dora"):
        raise ValueError("rsLoRA/DoRA adapters have no GGUF form here; train with plain LoRA")
    if base_config is None:
        from mcqa.llm.hf import load_hf_config

        base_config = load_hf_config(base).to_dict()
    arch = base_gguf_arch(base)
    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, base_config["num_hidden_layers"])
    n_head = base_config["num_attention_heads"]
    n_kv = base_config.get("num_key_value_heads") or n_head

    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        if ".lora_A." not in name and ".lora_B." not in name:
            raise ValueError(f"unexpected tensor {name} in {adapter}: only LoRA A/B weights can be exported")
        hf_name = (
            name.replace("base_model.model.", "")
            .replace(".lora_A.weight", ".weight")
            .replace(".lora_B.weight", ".weight")
        )
        pairs.setdefault(hf_name, {})["a" if ".lora_A." in name else "b"] = value.astype(np.float32)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)  # writes general.architecture
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora_config["lora_alpha"]))
    for hf_name in sorted(pairs):
        a, b = pairs[hf_name]["a"], pairs[hf_name]["b"]
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise ValueError(f"{hf_name} has no GGUF name for architecture {arch}")
        if arch in PERMUTED_QK and hf_name.endswith("q_proj.weight"):
            b = _permute_rows(b, n_head)
        elif arch in PERMUTED_QK and hf_name.endswith("k_proj.weight"):
            b = _permute_rows(b, n_kv)
        writer.add_tensor(gguf_name + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(gguf_name + ".lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
