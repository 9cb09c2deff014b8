"""The openai backend against a real `python -m llama_cpp.server` (started here, on 127.0.0.1) serving
the same SmolLM2 GGUF as the embedded backend; and its errors against a dead port and a bad server."""

import http.server
import json
import threading
import time

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
    (verdict,) = remote.generate([[{"role": "user", "content": "Is the earth round?"}]],
                                 grammar='root ::= "TRUE" | "FALSE"', max_tokens=4)
    assert verdict in {"TRUE", "FALSE"}
    (text,) = remote.generate([[{"role": "user", "content": "Say hello."}]], max_tokens=8)
    assert text.strip() and remote.stats["generated_tokens"] > 0


def test_agent_gives_the_same_letters_through_the_server(remote, tiny_llm, data_root):
    """answer + verify on real items, greedy: the same letters and verdicts as the embedded backend."""
    items = load_split("arc_challenge", "test", data_root).items[:4]
    cfg = load_config(**{"llm.model": "smollm2-135m", "agent.tasks": ["answer"], "agent.verify": True,
                         "agent.reconsider_rounds": 0, "agent.few_shot": 0})
    local = AgentSolver(cfg, dataset="arc_challenge", llm=tiny_llm)(items)
    served = AgentSolver(cfg, dataset="arc_challenge", llm=remote)(items)
    assert [p.answer for p in served] == [p.answer for p in local]
    # TRUE/FALSE are several tokens in SmolLM2's vocabulary: the server's top_logprobs score their first
    # tokens only, the embedded backend the whole words, so P(TRUE) differs a little (0.08-0.13 here)
    assert [p.verification > 0.5 for p in served] == [p.verification > 0.5 for p in local]


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
        type(self).calls += 1
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["messages"][0]["content"] == "500":
            self._send(500, b'{"error": "boom"}')
        else:
            self._send(200, b"<html>not json</html>")


def test_unusable_answers_and_5xx_are_clear_errors():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        llm = load_llm(LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{httpd.server_port}/v1",
                                 model="m", max_retries=1))
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
    choice = {"logprobs": {"content": [{"top_logprobs": [
        {"token": "A", "logprob": -0.5}, {"token": " A", "logprob": -2.0}, {"token": "TR", "logprob": -1.0},
        {"token": "The", "logprob": -3.0}]}]}}
    scores = _option_scores(choice, ["A", "B", "TRUE"])
    assert scores[0] == pytest.approx(np.logaddexp(-0.5, -2.0))
    assert scores[1] == -3.0  # unlisted: the smallest listed log-prob, an upper bound
    assert scores[2] == -1.0  # the longest listed token the option starts with
    assert _option_scores({"logprobs": None}, ["A"]) is None
