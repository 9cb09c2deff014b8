"""The openai backend against a real `python -m llama_cpp.server` (started here, on 127.0.0.1) serving
the same SmolLM2 GGUF as the embedded backend; its errors against a dead port and a bad server; and
vLLM's endpoints (tokenize, echoed prompt log-probs) against a stand-in that answers as vLLM documents."""

import http.server
import json
import threading
import time
import warnings

import numpy as np
import pytest

from mcqa.agent.solver import AgentSolver
from mcqa.config import LLMConfig, load_config
from mcqa.datasets import load_split
from mcqa.llm import load_llm
from mcqa.llm.openai_api import ServerError, _option_scores
from mcqa.llm.serve import Server, free_port
from mcqa.prompts import answer_chat
from mcqa.types import Item

ITEMS = [
    Item(id="1", question="What is 2 + 2?", choices=["3", "4", "5", "22"], answer="B"),
    Item(id="2", question="Which planet is known as the Red Planet?", choices=["Venus", "Mars", "Jupiter"], answer="B"),
    Item(id="3", question="What colour is the sky on a clear day?", choices=["Blue", "Green"], answer="A"),
]


@pytest.fixture(scope="module")
def server():
    with Server(LLMConfig(model="smollm2-135m", n_ctx=2048, n_threads=1), engine="llamacpp", ready_timeout=180) as s:
        yield s


@pytest.fixture(scope="module")
def remote(server):
    llm = load_llm(LLMConfig(backend="openai", base_url=server.base_url, model="smollm2-135m", concurrency=4))
    yield llm
    llm.close()


def test_scores_match_the_embedded_backend(remote, tiny_llm):
    """Same GGUF, same llama.cpp: the server's top_logprobs give the embedded scores."""
    chats = [answer_chat(it) for it in ITEMS]
    served = remote.score_options(chats, ["A", "B", "C"])
    local = tiny_llm.score_options(chats, ["A", "B", "C"])
    np.testing.assert_allclose(np.exp(served).sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(served, local, atol=0.05)
    assert remote.kind == "llamacpp" and remote.stats["constrained_fallbacks"] == 0


def test_constrained_generation_and_grammar(remote):
    chats = [answer_chat(it) for it in ITEMS]
    scores = remote.score_options(chats, ["A", "B"])
    assert remote.generate(chats, choices=["A", "B"]) == [["A", "B"][int(np.argmax(r))] for r in scores]
    (verdict,) = remote.generate(
        [[{"role": "user", "content": "Is the earth round?"}]], grammar='root ::= "TRUE" | "FALSE"', max_tokens=4
    )
    assert verdict in {"TRUE", "FALSE"}
    (text,) = remote.generate([[{"role": "user", "content": "Say hello."}]], max_tokens=8)
    assert text.strip() and remote.stats["generated_tokens"] > 0


def test_agent_gives_the_same_letters_through_the_server(remote, tiny_llm, data_root):
    """answer + verify on real items, greedy: the same letters and verdicts as the embedded backend."""
    items = load_split("arc_challenge", "test", data_root).items[:4]
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
    local = AgentSolver(cfg, dataset="arc_challenge", llm=tiny_llm)(items)
    served = AgentSolver(cfg, dataset="arc_challenge", llm=remote)(items)
    assert [p.answer for p in served] == [p.answer for p in local]
    # TRUE/FALSE are several tokens in SmolLM2's vocabulary, scored whole by both (see below)
    np.testing.assert_allclose([p.verification for p in served], [p.verification for p in local], atol=0.05)


def test_multi_token_options_sharing_a_first_token_match_the_embedded_backend(remote, tiny_llm):
    """Options scored whole: those sharing their first tokens still differ, as in the embedded backend.

    Compared as probabilities, to the letters' 0.05: the server evaluates each forced token alone, the
    embedded backend re-runs two (llamacpp.py: other kernels, up to 0.15 nats apart here)."""
    chats = [answer_chat(it) for it in ITEMS] + [[{"role": "user", "content": "Is the earth flat? Answer in words."}]]
    for options in ([" TRUE statement", " TRUE story"], ["Yes, always", "Yes, never"]):
        tokens = [remote.tokenize(o) for o in options]
        assert tokens == [tiny_llm._tokens_of(o) for o in options]
        assert len(tokens[0]) > 1 and tokens[0][:-1] == tokens[1][:-1] and tokens[0] != tokens[1]
        served = remote.score_options(chats, options)
        local = tiny_llm.score_options(chats, options)
        np.testing.assert_allclose(np.exp(served).sum(axis=1), 1.0, rtol=1e-9)
        assert (np.abs(served[:, 0] - served[:, 1]) > 0.05).all(), served  # the first token alone gives 0
        np.testing.assert_allclose(np.exp(served), np.exp(local), atol=0.05)
        np.testing.assert_allclose(served, local, atol=0.25)
    assert remote.stats["constrained_fallbacks"] == 0


@pytest.fixture(scope="module")
def short_context():
    """A server and an embedded backend with a 256-token context, for prompts that overflow it."""
    config = LLMConfig(model="smollm2-135m", n_ctx=256, n_threads=1)
    with Server(config, engine="llamacpp", ready_timeout=180) as server:
        remote = load_llm(LLMConfig(backend="openai", base_url=server.base_url, model="smollm2-135m"))
        local = load_llm(config)
        yield remote, local
        remote.close()
        local.close()


def test_over_long_prompts_keep_their_end_in_both_backends(short_context):
    """A prompt past the context: both backends cut it, count it, and still score and answer."""
    remote, local = short_context
    facts = " ".join(f"{n} is {'odd' if n % 2 else 'even'}." for n in range(80))
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"{facts}\nIs 7 odd? Answer TRUE or FALSE."},
    ]
    for llm in (remote, local):
        for options in (["TRUE", "FALSE"], ["A", "B"]):
            (scores,) = llm.score_options([chat], options)
            assert np.isfinite(scores).all() and np.exp(scores).sum() == pytest.approx(1.0)
        (text,) = llm.generate([chat], max_tokens=4)
        assert isinstance(text, str)
        assert llm.stats["truncated_prompts"] == 3, llm.name
    assert remote.n_ctx == 256  # learned from the server's context-length error


def test_a_dead_server_is_one_clear_error():
    port = free_port()
    started = time.perf_counter()
    with pytest.raises(ServerError, match=rf"127.0.0.1:{port}/v1/models: cannot connect.*after 2 attempts"):
        load_llm(LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1))
    assert time.perf_counter() - started < 10


class _BadServer(http.server.BaseHTTPRequestHandler):
    """/models is fine; chat completions answer garbage (200) or fail (500), by the model asked for."""

    calls = 0

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, json.dumps({"data": [{"id": "m", "owned_by": "me"}]}).encode())

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":  # no tokenizer endpoint
            return self._send(404, b'{"detail": "Not Found"}')
        type(self).calls += 1
        if request["messages"][0]["content"] == "500":
            self._send(500, b'{"error": "boom"}')
        else:
            self._send(200, b"<html>not json</html>")


def test_unusable_answers_and_5xx_are_clear_errors():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        llm = load_llm(
            LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{httpd.server_port}/v1", model="m", max_retries=1)
        )
        with pytest.raises(ServerError, match="not JSON"):
            llm.generate([[{"role": "user", "content": "hi"}]], max_tokens=2)
        _BadServer.calls = 0
        with pytest.raises(ServerError, match=r"HTTP 500.*after 2 attempts"):
            llm.score_options([[{"role": "user", "content": "500"}]], ["A", "B"])
        assert _BadServer.calls == 2  # retried once, after a backoff
        llm.close()
    finally:
        httpd.shutdown()


def test_option_scores_from_top_logprobs():
    choice = {
        "logprobs": {
            "content": [
                {
                    "top_logprobs": [
                        {"token": "A", "logprob": -0.5},
                        {"token": " A", "logprob": -2.0},
                        {"token": "TR", "logprob": -1.0},
                        {"token": "The", "logprob": -3.0},
                    ]
                }
            ]
        }
    }
    scores = _option_scores(choice, ["A", "B", "TRUE"])
    assert scores[0] == pytest.approx(np.logaddexp(-0.5, -2.0))
    assert scores[1] == -3.0  # unlisted: the smallest listed log-prob, an upper bound
    assert scores[2] == -1.0  # the longest listed token the option starts with
    assert _option_scores({"logprobs": None}, ["A"]) is None


class _FakeVLLM(http.server.BaseHTTPRequestHandler):
    """vLLM's endpoints as its docs and source describe them, over a 10-token context; a prompt token t
    has log-prob -t/100 in echo mode, so sums are checkable. With `tokenizer` off: no /tokenize."""

    tokenizer = True
    options = {"Yes, always": [7, 8], "Yes, never": [7, 9], "": []}
    sent: list = []

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 10}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).sent.append((self.path, request))
        if self.path == "/tokenize" and self.tokenizer:
            tokens = list(range(20, 32)) if "messages" in request else self.options[request["prompt"]]
            return self._send(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 10})
        if self.path == "/v1/completions" and request.get("echo"):
            prompt = request["prompt"]
            logprobs = [None] + [-t / 100 for t in prompt[1:]] + [-0.5]
            return self._send(200, {"choices": [{"text": "", "logprobs": {"token_logprobs": logprobs}}]})
        if self.path == "/v1/chat/completions":
            top = [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.0}]
            return self._send(
                200,
                {
                    "choices": [
                        {
                            "message": {"content": "Yes"},
                            "logprobs": {"content": [{"token": "Yes", "logprob": -0.2, "top_logprobs": top}]},
                        }
                    ],
                    "usage": {"prompt_tokens": 5},
                },
            )
        self._send(404, {"detail": "Not Found"})


@pytest.fixture
def fake_vllm():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeVLLM)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _FakeVLLM.sent, _FakeVLLM.tokenizer = [], True
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


def test_vllm_options_are_echoed_prompt_log_probs_of_the_cut_prompt(fake_vllm):
    llm = load_llm(LLMConfig(backend="openai", base_url=fake_vllm, model="m", max_retries=0))
    assert (llm.kind, llm.n_ctx) == ("vllm", 10)
    scores = llm.score_options([[{"role": "user", "content": "?"}]], ["Yes, always", "Yes, never"])
    echoed = [r for path, r in _FakeVLLM.sent if path == "/v1/completions"]
    # 12 prompt tokens, a 10-token context, 3 kept for the option and the one generated token: the last 7
    assert sorted(r["prompt"] for r in echoed) == [list(range(25, 32)) + [7, 8], list(range(25, 32)) + [7, 9]]
    assert all(r["echo"] and r["max_tokens"] == 1 for r in echoed)
    raw = np.array([-(7 + 8) / 100, -(7 + 9) / 100])
    np.testing.assert_allclose(scores[0], raw - np.logaddexp.reduce(raw))
    assert llm.stats["truncated_prompts"] == 1
    llm.close()


def test_without_a_tokenizer_endpoint_first_tokens_and_one_warning(fake_vllm):
    _FakeVLLM.tokenizer = False
    llm = load_llm(LLMConfig(backend="openai", base_url=fake_vllm, model="m", max_retries=0))
    chat = [{"role": "user", "content": "?"}]
    with pytest.warns(RuntimeWarning, match="first token only"):
        first = llm.score_options([chat], ["Yes, always", "No, never"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(llm.score_options([chat], ["Yes, always", "No, never"]), first)
    np.testing.assert_allclose(first[0], np.array([-0.2, -1.0]) - np.logaddexp(-0.2, -1.0))
    llm.close()
