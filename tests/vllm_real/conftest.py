"""The tiny SmolLM2 GGUF converted once (`mcqa convert`, float32: closest to the GGUF's numbers)."""

import pytest


@pytest.fixture(scope="session")
def converted():
    """The safetensors folder vLLM loads, kept in the cache folder (the conversion takes about a minute)."""
    from mcqa.config import cache_dir
    from mcqa.llm.convert import convert

    out = cache_dir() / "models" / "smollm2-135m-vllm-float32"
    if not (out / "mcqa-convert.json").is_file():
        convert("smollm2-135m", out, dtype="float32", overwrite=True)
    return out
