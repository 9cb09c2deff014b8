"""LoRA SFT of the LLM (mcqa train llm), its exports and the think data, on the real SmolLM2 and data.

The GGUF adapter test is the proof the llama.cpp export works: the quantized base GGUF plus the
exported adapter must score like the transformers model with the peft adapter (and unlike the base).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcqa.config import LLMConfig
from mcqa.finetune.common import TrainError, TrainRun
from mcqa.finetune.llm import Config, LoraSettings, answer_examples, build_examples, pick_backend, train

TINY = "smollm2-135m"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pick_backend_uses_unsloth_only_with_cuda_and_unsloth():
    assert pick_backend("auto", cuda=True, unsloth=True) == "unsloth"
    assert pick_backend("auto", cuda=False, unsloth=True) == "peft"
    assert pick_backend("auto", cuda=True, unsloth=False) == "peft"
    assert pick_backend("peft", cuda=True, unsloth=True) == "peft"
    with pytest.raises(TrainError, match="CUDA"):
        pick_backend("unsloth", cuda=False, unsloth=True)


def test_pick_backend_detects_cuda_and_unsloth_when_not_told(monkeypatch):
    """Left to detect, the choice follows torch.cuda.is_available() and whether unsloth is installed,
    whatever machine runs the test (both are faked here)."""
    import importlib.util

    import torch

    real_find_spec, machine = importlib.util.find_spec, {}

    def find_spec(name, *args, **kwargs):
        if name == "unsloth":
            return object() if machine["unsloth"] else None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: machine["cuda"])
    for cuda in (False, True):
        for unsloth in (False, True):
            machine.update(cuda=cuda, unsloth=unsloth)
            assert pick_backend("auto") == ("unsloth" if cuda and unsloth else "peft"), machine
    machine.update(cuda=False, unsloth=True)
    with pytest.raises(TrainError, match="CUDA"):
        pick_backend("unsloth")


def test_examples_are_the_agents_prompts_and_seeded(data_root):
    from mcqa.agent.prompts import Prompts, base_chat, rerank_chat
    from mcqa.rag.splits import load_items

    items = load_items("codemmlu_fpt", "fit")[:5]
    examples = answer_examples(items)
    labelled = [it for it in items if it.answer]
    assert [ex["prompt"] for ex in examples] == [base_chat(it, [], Prompts()) for it in labelled]
    assert [ex["completion"] for ex in examples] == [[{"role": "assistant", "content": it.answer}] for it in labelled]

    config = Config(task="rerank", datasets=["eedi"], negatives=2, seed=3)
    rerank = build_examples(config, "fit")
    assert rerank == build_examples(config, "fit")  # same seed, same examples and negatives
    assert rerank != build_examples(config.model_copy(update={"seed": 4}), "fit")
    targets = [ex["completion"][0]["content"] for ex in rerank]
    assert targets.count("No") == 2 * targets.count("Yes") > 0
    first = next(ex for ex in rerank if ex["completion"][0]["content"] == "Yes")
    item = next(it for it in load_items("eedi", "fit", seed=3) if it.id == first["item_id"])
    assert any(
        first["prompt"] == rerank_chat(item, letter, name, Prompts())
        for letter in item.misconceptions
        for name in [first["prompt"][1]["content"].split('"')[1]]
    )


def _letter_logprobs_hf(model, tokens: list[int], option_ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0, -1].double()
    scores = torch.log_softmax(logits, -1)[option_ids].numpy()
    return scores - np.log(np.exp(scores).sum())


def test_gguf_lora_adapter_scores_like_the_peft_model(tmp_path, data_root):
    """A random (non-zero) LoRA on every linear layer, exported to GGUF and applied by llama.cpp to the
    Q4 base, gives the letter scores of transformers + peft; the base alone does not."""
    import torch
    from peft import LoraConfig, get_peft_model

    from mcqa.agent.prompts import Prompts, base_chat
    from mcqa.finetune.export import export_gguf_lora, merge_adapter
    from mcqa.llm import load_llm
    from mcqa.llm.hf import load_hf_causal_lm
    from mcqa.rag.splits import load_items

    torch.manual_seed(0)
    base, _ = load_hf_causal_lm(TINY)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=LoraSettings().target_modules, init_lora_weights=False)
    model = get_peft_model(base, lora)  # init_lora_weights=False: B is random, not zero
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    export_gguf_lora(tmp_path / "adapter", TINY, tmp_path / "adapter.gguf")

    items = [it for it in load_items("codemmlu_fpt", "validation") if it.answer and len(it.choices) == 4][:6]
    chats = [base_chat(it, [], Prompts()) for it in items]
    letters = ["A", "B", "C", "D"]
    plain = load_llm(LLMConfig(model=TINY, n_ctx=2048, n_threads=1))
    adapted = load_llm(LLMConfig(model=TINY, n_ctx=2048, n_threads=1, lora=str(tmp_path / "adapter.gguf")))
    try:
        option_ids = [plain._tokens_of(x)[0] for x in letters]
        tokens = [plain.prompt_tokens(chat) for chat in chats]
        cpp_base, cpp_lora = plain.score_options(chats, letters), adapted.score_options(chats, letters)
    finally:
        plain.close()
        adapted.close()
    hf_lora = np.stack([_letter_logprobs_hf(model, t, option_ids) for t in tokens])
    with model.disable_adapter():
        hf_base = np.stack([_letter_logprobs_hf(model, t, option_ids) for t in tokens])

    # Measured: shift 1.15 nats, base-vs-base 0.07 (Q4 kernels vs dequantized fp32), adapter error 0.06;
    # without the q/k row permutation the llama.cpp scores move 0.45 away.
    shift = np.abs(hf_lora - hf_base).mean()
    assert shift > 0.5, f"the adapter barely moves the scores ({shift:.3f}); the test would prove nothing"
    assert np.abs(cpp_base - hf_base).mean() < 0.15
    error = np.abs(cpp_lora - hf_lora).mean()
    assert error < 0.15 * shift, f"llama.cpp + GGUF adapter differs from peft by {error:.3f} (shift {shift:.3f})"
    assert np.abs(cpp_lora - cpp_base).mean() > 0.7 * shift

    merged = merge_adapter(TINY, tmp_path / "adapter", tmp_path / "merged", dtype="float32")
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    hf_merged = np.stack([_letter_logprobs_hf(reloaded, t, option_ids) for t in tokens])
    assert np.abs(hf_merged - hf_lora).max() < 1e-3


def test_answer_sft_resumes_after_a_crash_and_exports_a_working_adapter(tmp_path, data_root):
    """Killed at step 3 (checkpoint at 2), the same command resumes at 2 and stops at max_steps; the loss on
    held-out answers goes down and the exported GGUF adapter loads in llama.cpp."""
    from transformers import TrainerCallback

    from mcqa.agent.prompts import Prompts, base_chat
    from mcqa.llm import load_llm
    from mcqa.rag.splits import load_items

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("simulated crash")

    config = Config(
        base=TINY,
        datasets=["codemmlu_fpt"],
        max_items=12,
        eval_items=6,
        max_steps=4,
        save_steps=2,
        batch_size=2,
        max_seq_len=256,
        learning_rate=2e-3,
        lora=LoraSettings(r=4, alpha=8),
        seed=0,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, TrainRun(tmp_path / "run", config), callbacks=[Crash()])
    assert (tmp_path / "run/checkpoints/checkpoint-2").is_dir()
    assert not (tmp_path / "run/adapter").exists()

    run = TrainRun(tmp_path / "run", config)  # the same command again
    results = train(config, run)
    run.write_results(results)
    results = run.read_results()
    assert results["resumed_from"].endswith("checkpoint-2")
    assert results["global_step"] == 4 and results["timing"]["steps"] == 2  # only steps 3 and 4 ran again
    assert results["examples"] == 12 and results["eval_examples"] == 6
    assert results["eval_loss_after"] < results["eval_loss_before"]  # written by the crashed first call
    assert results["timing"]["median_step_s"] > 0 and results["total_s"] > 0

    item = next(it for it in load_items("codemmlu_fpt", "validation") if it.answer)
    llm = load_llm(LLMConfig(model=TINY, n_ctx=2048, n_threads=1, lora=results["artifacts"]["gguf_lora"]))
    try:
        scores = llm.score_options([base_chat(item, [], Prompts())], item.letters)
    finally:
        llm.close()
    assert np.isclose(np.exp(scores).sum(), 1.0)

    again = train(config, TrainRun(tmp_path / "run", config))  # finished: nothing is trained twice
    assert "global_step" not in again and again["artifacts"] == results["artifacts"]


def test_think_data_is_reproducible_resumable_and_trains(tmp_path, tiny_llm, data_root):
    from mcqa.agent.prompts import Prompts, think_chat
    from mcqa.finetune.think import generate_think_data
    from mcqa.rag.splits import load_items

    first = generate_think_data("eedi", "fit", tmp_path / "a.jsonl", tiny_llm, limit=4, seed=1, max_tokens=12)
    generate_think_data("eedi", "fit", tmp_path / "b.jsonl", tiny_llm, limit=4, seed=1, max_tokens=12)
    assert first["written"] == 4
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert generate_think_data("eedi", "fit", tmp_path / "a.jsonl", tiny_llm, limit=4, seed=1)["written"] == 0

    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    items = {it.id: it for it in load_items("eedi", "fit")}
    for row in rows:  # the stored prompt is the agent's think chat, without the teacher's hint
        assert row["prompt"] == think_chat(items[row["item_id"]], row["letter"], Prompts())
        assert row["misconception"] and row["misconception_ids"]
    other = generate_think_data("eedi", "fit", tmp_path / "c.jsonl", tiny_llm, limit=4, seed=2, max_tokens=12)
    assert other["written"] == 4
    assert [r["item_id"] for r in map(json.loads, (tmp_path / "c.jsonl").read_text().splitlines())] != [
        r["item_id"] for r in rows
    ]

    config = Config(task="think", think_data=str(tmp_path / "a.jsonl"), eval_items=1)
    fit, held = build_examples(config, "fit"), build_examples(config, "validation")
    assert len(fit) + len(held) == sum(1 for r in rows if r["explanation"]) and len(held) >= 1
    assert all(ex["completion"][0]["content"] for ex in fit + held)


def test_gguf_load_caches_tokenizer_and_config(tmp_path, monkeypatch):
    """The first GGUF load converts the tokenizer and config and caches them (mcqa.llm.hf); the second reads
    that one folder (no GGUF parse, no new folder) and gives the same tokenizer (ids, chat template, special
    tokens) and config. The model loaded with the cached config is held to llama.cpp's scores by
    test_gguf_lora_adapter_scores_like_the_peft_model, so it is not loaded twice here."""
    from transformers import AutoConfig, AutoTokenizer

    from mcqa.llm.hf import _gguf_tokenizer_and_config, hf_source

    cache = tmp_path / "cache"
    monkeypatch.setenv("MCQA_CACHE_DIR", str(cache))
    folder, gguf = hf_source(TINY)
    reference, cold_config = _gguf_tokenizer_and_config(folder, gguf)  # empty cache: from the GGUF, then cached
    folders = sorted((cache / "hf-gguf").iterdir())
    assert len(folders) == 1 and {"tokenizer.json", "config.json"} <= {p.name for p in folders[0].iterdir()}

    gguf_parses = []
    for auto in (AutoTokenizer, AutoConfig):
        original = auto.from_pretrained
        monkeypatch.setattr(
            auto,
            "from_pretrained",
            lambda *args, _original=original, **kwargs: (
                gguf_parses.append(kwargs.get("gguf_file")),
                _original(*args, **kwargs),
            )[1],
        )
    tok, config = _gguf_tokenizer_and_config(folder, gguf)
    assert sorted((cache / "hf-gguf").iterdir()) == folders
    assert gguf_parses and not any(gguf_parses), "the second load parsed the GGUF again instead of the cache"
    monkeypatch.undo()

    chat = [
        {"role": "system", "content": "Answer with a letter."},
        {"role": "user", "content": "2 + 2 = ?\nA. 3\nB. 4"},
    ]
    prompt = reference.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    texts = ["Hello, world!", " ünïcödé 数学\t\n  x<|im_end|>", prompt]
    assert reference.chat_template and tok is not reference
    assert tok.chat_template == reference.chat_template
    assert tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == prompt
    assert [tok(t).input_ids for t in texts] == [reference(t).input_ids for t in texts]
    assert tok.special_tokens_map == reference.special_tokens_map and len(tok) == len(reference)
    assert config.to_dict() == cold_config.to_dict()
