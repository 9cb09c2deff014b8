"""A fine-tuned adapter two ways through real vLLM: applied per request (`llm.lora` -> LoRARequest) and
merged into the weights by `mcqa convert --adapter`. Both must score alike, and unlike the base."""

import os

import numpy as np
import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: `make test-vllm` runs these in .venv-vllm")

from mcqa.config import LLMConfig  # noqa: E402
from mcqa.llm import load_llm  # noqa: E402
from mcqa.prompts import answer_chat  # noqa: E402
from mcqa.types import Item  # noqa: E402

pytestmark = pytest.mark.vllm
THREADS = int(os.environ.get("MCQA_THREADS", "1"))
ITEMS = [
    Item(id="1", question="What is 2 + 2?", choices=["3", "4", "5", "22"], answer="B"),
    Item(id="2", question="Which planet is known as the Red Planet?", choices=["Venus", "Mars", "Jupiter"]),
]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A peft LoRA adapter on SmolLM2 with non-zero B matrices, so it changes the scores."""
    import torch
    from peft import LoraConfig, get_peft_model

    from mcqa.llm.hf import load_hf_causal_lm

    model, _ = load_hf_causal_lm("smollm2-135m")
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def scores(model, lora=None):
    llm = load_llm(
        LLMConfig(
            backend="vllm",
            model=str(model),
            lora=str(lora) if lora else None,
            n_ctx=1024,
            n_threads=THREADS,
            dtype="float32",
            enforce_eager=True,
            max_num_seqs=8,
        )
    )
    try:
        return llm.score_options([answer_chat(it) for it in ITEMS], ["A", "B", "C"])
    finally:
        llm.close()


def test_lora_request_matches_the_merged_conversion(converted, adapter, tmp_path):
    from mcqa.llm.convert import convert

    merged = convert("smollm2-135m", tmp_path / "merged", adapter=adapter, dtype="float32")
    with_request = scores(converted, lora=adapter)
    with_merge = scores(merged)
    np.testing.assert_allclose(np.exp(with_request), np.exp(with_merge), atol=0.01)
    assert np.abs(np.exp(with_request) - np.exp(scores(converted))).max() > 0.01, "the adapter changed nothing"
