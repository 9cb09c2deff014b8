"""Any OpenAI-compatible server (`mcqa serve`, vLLM's api_server, `python -m llama_cpp.server`).

A thin httpx client, not the `openai` package: two endpoints are all the protocol needs. A batch of
chats becomes that many concurrent requests (`concurrency` in flight), so a server that batches
(vLLM) sees them together. Each request is retried on a connection error, a timeout, a 429 or a
5xx, with exponential backoff; what still fails raises `ServerError` with the URL and the reason in
one line (the eval runner then retries the batch and stops the run when the server stays down).

`score_options` asks for one token with `top_logprobs` and reads the options' first tokens from it
(renormalised over the options). Options the server did not list get the smallest listed log-prob,
an upper bound; when it lists none of them (or offers no logprobs at all), the choice falls back to
constrained generation: `structured_outputs`/`guided_choice` for vLLM, a GBNF `grammar` for
llama.cpp, and the chosen option gets all the probability.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mcqa.config import LLMConfig
from mcqa.llm.base import LLM, Chat, choices_grammar, normalise_logprobs

TOP_LOGPROBS = 20  # the most OpenAI's API allows; vLLM's default --max-logprobs is 20 too
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    """The server is unreachable, keeps failing, or answered something unusable."""


class OpenAIServerLLM(LLM):
    name = "openai"

    def __init__(self, config: LLMConfig | None = None):
        super().__init__()
        import httpx

        self.config = config or LLMConfig(backend="openai")
        self.base_url = self.config.base_url.rstrip("/")
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        self.client = httpx.Client(
            base_url=self.base_url, timeout=self.config.timeout,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            limits=httpx.Limits(max_connections=self.config.concurrency),
        )
        self.pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="mcqa-openai")
        self.model, self.kind = self._probe()

    # -- transport -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        import httpx

        problem = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(min(2 ** (attempt - 1), 30))
            try:
                response = self.client.request(method, path, json=payload)
            except httpx.TimeoutException:
                problem = f"no answer within {self.config.timeout:g}s"
                continue
            except httpx.TransportError as exc:
                problem = f"cannot connect ({type(exc).__name__}: {exc}); is the server running?"
                continue
            if response.status_code in RETRY_STATUS:
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise ServerError(f"{self.base_url}{path}: HTTP {response.status_code}: {response.text[:300]}")
            try:
                return response.json()
            except ValueError:
                raise ServerError(f"{self.base_url}{path}: answer is not JSON: {response.text[:200]!r}") from None
        self.stats["failed_requests"] += 1
        raise ServerError(f"{self.base_url}{path}: {problem} (after {self.config.max_retries + 1} attempts)")

    def _probe(self) -> tuple[str, str]:
        """(model to ask for, server kind) from /models: the config's model when the server serves it,
        else the server's first; vllm or llamacpp (or other), which spell constrained decoding differently."""
        listed = [m for m in self._request("GET", "/models").get("data", []) if isinstance(m, dict)]
        if not listed:
            raise ServerError(f"{self.base_url}/models: the server lists no model")
        chosen = next((m for m in listed if m.get("id") == self.config.model), listed[0])
        owner = str(chosen.get("owned_by", "")).lower()
        kind = "vllm" if "vllm" in owner else "llamacpp" if owner in ("me", "llamacpp") else "other"
        return str(chosen.get("id")), kind

    def _chat(self, chats: list[Chat], **params) -> list[dict]:
        """One chat completion per chat, concurrently, in order: the first choice of each."""
        def one(chat: Chat) -> dict:
            answer = self._request("POST", "/chat/completions", {"model": self.model, "messages": chat, **params})
            try:
                choice = answer["choices"][0]
            except (KeyError, IndexError, TypeError):
                raise ServerError(f"{self.base_url}/chat/completions: no choices in {str(answer)[:200]}") from None
            usage = answer.get("usage") or {}
            self.stats["prompt_tokens"] += int(usage.get("prompt_tokens", 0) or 0)
            self.stats["generated_tokens"] += int(usage.get("completion_tokens", 0) or 0)
            return choice

        return list(self.pool.map(one, chats))

    def _constraint(self, choices: list[str] | None, grammar: str | None) -> dict:
        if choices is not None:
            if self.kind == "vllm":
                return {"structured_outputs": {"choice": choices}}
            return {"grammar": choices_grammar(choices)}
        if grammar is not None:
            if self.kind == "vllm":
                return {"structured_outputs": {"grammar": grammar}}
            return {"grammar": grammar}
        return {}

    # -- the protocol --------------------------------------------------------------------------
    def generate(self, chats: list[Chat], max_tokens: int = 256, choices: list[str] | None = None,
                 grammar: str | None = None, temperature: float = 0.0, stop: list[str] | None = None) -> list[str]:
        if choices is not None:
            max_tokens = max(len(c) for c in choices) + 1  # characters bound the tokens from above
        params = {"max_tokens": max_tokens, "temperature": temperature, "seed": self.config.seed,
                  **self._constraint(choices, grammar)}
        if stop:
            params["stop"] = stop
        texts = [(c.get("message") or {}).get("content") or "" for c in self._chat(chats, **params)]
        if choices is not None:
            texts = [_closest(text, choices) for text in texts]
        self.stats["generated"] += len(chats)
        return texts

    def score_options(self, chats: list[Chat], options: list[str]) -> np.ndarray:
        if not options:
            raise ValueError("options must not be empty")
        answers = self._chat(chats, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
        out = np.empty((len(chats), len(options)))
        fallback = []
        for row, choice in enumerate(answers):
            scores = _option_scores(choice, options)
            if scores is None:
                fallback.append(row)
            else:
                out[row] = scores
        if fallback:  # no usable logprobs: the constrained choice gets (almost) all the probability
            self.stats["constrained_fallbacks"] += len(fallback)
            picked = self.generate([chats[r] for r in fallback], choices=options)
            for row, text in zip(fallback, picked):
                out[row] = np.where(np.array(options) == text, 0.0, -30.0)
        self.stats["scored"] += len(chats)
        return normalise_logprobs(out)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _option_scores(choice: dict, options: list[str]) -> np.ndarray | None:
    """Each option's log-prob from the first position's top_logprobs, or None if none is listed.

    A token matches an option when its text (spaces stripped) is the option, or, for an option
    longer than one token, the longest listed token the option starts with. Several matching tokens
    (" A" and "A") add up.
    """
    try:
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    listed = [(str(t.get("token", "")).strip(), float(t["logprob"])) for t in top if t.get("logprob") is not None]
    if not listed:
        return None
    scores = np.full(len(options), -np.inf)
    for col, option in enumerate(options):
        exact = [lp for text, lp in listed if text == option]
        if not exact:
            prefixes = [(len(text), lp) for text, lp in listed if text and option.startswith(text)]
            longest = max((n for n, _ in prefixes), default=0)
            exact = [lp for n, lp in prefixes if n == longest and n]
        if exact:
            scores[col] = np.logaddexp.reduce(exact)
    if not np.isfinite(scores).any():
        return None
    floor = min(lp for _, lp in listed)
    return np.where(np.isfinite(scores), scores, floor)


def _closest(text: str, choices: list[str]) -> str:
    """The choice a constrained completion produced (servers may add spaces); else the first match."""
    stripped = text.strip()
    if stripped in choices:
        return stripped
    for option in sorted(choices, key=len, reverse=True):
        if stripped.startswith(option):
            return option
    raise ServerError(f"constrained generation returned {text!r}, none of {choices}")
