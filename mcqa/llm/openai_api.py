"""Any OpenAI-compatible server (`mcqa serve`, vLLM's api_server, `python -m llama_cpp.server`).

A thin httpx client, not the `openai` package. A batch of chats becomes that many concurrent
requests (`concurrency` in flight), so a server that batches (vLLM) sees them together. Each
request is retried on a connection error, a timeout, a 429 or a 5xx, with exponential backoff; what
still fails raises `ServerError` with the URL and the reason in one line (the eval runner then
retries the batch and stops the run when the server stays down).

`score_options` scores each option whole, as the embedded backends do, with the server's own
tokenizer (`/extras/tokenize` on llama-cpp-python's server, `/tokenize` on vLLM's):
- every option one token (letters): one chat completion per chat with `top_logprobs`, its options
  read from the first position (renormalised over the options). An option the server did not list
  gets the smallest listed log-prob, an upper bound; when it lists none of them (or offers no
  logprobs at all), the choice falls back to constrained generation (`structured_outputs` on vLLM,
  a GBNF `grammar` on llama.cpp) and the chosen option gets all the probability.
- an option of several tokens, llama.cpp's servers: the option is generated, forced token by token
  (a `logit_bias` of +100 on its own tokens and a grammar of its text), and the log-probs the server
  reports for the generated tokens (computed before any bias) add up. One request per option.
  (llama-cpp-python's `echo` prompt log-probs are shifted by one position, unusable.) The server
  evaluates each generated token alone, through other kernels than the embedded backend (which
  re-runs two): on SmolLM2 Q4_1 an option's log-prob moves by up to 0.15 nats, its probability by
  under 0.03.
- an option of several tokens, vLLM: the prompt's tokens (`/tokenize` with the messages) plus the
  option's go to `/v1/completions` with `echo` and `logprobs`; the option's prompt log-probs add up.
A server without a tokenizer endpoint (OpenAI's own API) keeps the first-token scores, with one
warning.

A prompt that would overflow the server's context keeps its last tokens, as the embedded backends'
do, and is counted in `stats["truncated_prompts"]`. The context comes from `/models`
(`max_model_len`, vLLM) or from the server's context-length error (llama.cpp does not list it, so it
is learned from the first over-long prompt); the text is cut from the start of the earliest
messages, each keeping its role and template tokens (the embedded backends cut those too, so a cut
prompt scores close to theirs, not the same), through the server's tokenizer. vLLM's whole-option
path cuts the prompt's tokens themselves, exactly as the offline engine does. Without a tokenizer endpoint an
over-long prompt stays the server's error (one warning).
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mcqa.config import LLMConfig
from mcqa.llm.base import LLM, OPTION_CACHE, Chat, choices_grammar, normalise_logprobs

TOP_LOGPROBS = 20  # the most OpenAI's API allows; vLLM's default --max-logprobs is 20 too
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
FORCE_BIAS = 100  # the largest logit_bias OpenAI's API (and vLLM) accept
MAX_TRIMS = 4  # re-tokenising cut text can merge a token or two differently: cut again, a few times at most
# llama-cpp-python and vLLM word the error the same way (OpenAI's words); newer vLLM says "input tokens"
CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)")
PROMPT_LENGTH = (re.compile(r"\((\d+) in the messages"), re.compile(r"(\d+) input tokens"))
TOKENIZERS = (("/extras/tokenize", "/extras/detokenize"), ("/tokenize", "/detokenize"))


class ServerError(RuntimeError):
    """The server is unreachable, keeps failing, or answered something unusable."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ContextOverflow(ServerError):
    """HTTP 400: the prompt (with the tokens asked for) does not fit the server's context."""

    def __init__(self, message: str, n_ctx: int, prompt_tokens: int | None):
        super().__init__(message, 400)
        self.n_ctx, self.prompt_tokens = n_ctx, prompt_tokens


class OpenAIServerLLM(LLM):
    name = "openai"

    def __init__(self, config: LLMConfig | None = None):
        super().__init__()
        from mcqa.extras import require

        httpx = require("httpx", "openai", "the openai backend")
        self.config = config or LLMConfig(backend="openai")
        self.base_url = self.config.base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")  # where the tokenizer endpoints live
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=self.config.timeout,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            limits=httpx.Limits(max_connections=self.config.concurrency),
        )
        self.pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="mcqa-openai")
        self.model, self.kind, self.n_ctx, owner = self._probe()
        # llama-cpp-python's server answers one request at a time from one prompt cache: requests in
        # flight together only interleave prompts, so a chat's forced options go there one by one
        self.serial = owner == "me"
        self._tokenizer: tuple[str, str] | None | bool = False  # False: not probed yet
        self._probing = threading.Lock()
        self._empty: list[int] = []  # what the tokenizer adds to any text (a BOS), stripped off
        self._option_tokens: dict[str, list[int]] = {}
        self._warned: set[str] = set()

    # -- transport -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        import httpx

        problem = "no attempt"
        url = path if path.startswith("http") else f"{self.base_url}{path}"
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
                message = f"{url}: HTTP {response.status_code}: {response.text[:300]}"
                limit = CONTEXT_LIMIT.search(response.text)
                if response.status_code == 400 and limit:
                    found = next((p.search(response.text) for p in PROMPT_LENGTH if p.search(response.text)), None)
                    raise ContextOverflow(message, int(limit[1]), int(found[1]) if found else None)
                raise ServerError(message, response.status_code)
            try:
                return response.json()
            except ValueError:
                raise ServerError(f"{url}: answer is not JSON: {response.text[:200]!r}") from None
        self.stats["failed_requests"] += 1
        raise ServerError(f"{url}: {problem} (after {self.config.max_retries + 1} attempts)")

    def _probe(self) -> tuple[str, str, int | None, str]:
        """(model to ask for, server kind, context length if listed, owner) from /models: the config's
        model when the server serves it, else the server's first; vllm or llamacpp (or other), which
        spell constrained decoding differently. vLLM lists `max_model_len`; llama.cpp's servers do not."""
        listed = [m for m in self._request("GET", "/models").get("data", []) if isinstance(m, dict)]
        if not listed:
            raise ServerError(f"{self.base_url}/models: the server lists no model")
        chosen = next((m for m in listed if m.get("id") == self.config.model), listed[0])
        owner = str(chosen.get("owned_by", "")).lower()
        kind = "vllm" if "vllm" in owner else "llamacpp" if owner in ("me", "llamacpp") else "other"
        n_ctx = chosen.get("max_model_len")
        return str(chosen.get("id")), kind, int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None, owner

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{self.base_url}: {message}", RuntimeWarning, stacklevel=3)

    # -- the server's tokenizer ----------------------------------------------------------------
    def _tokenizer_paths(self) -> tuple[str, str] | None:
        """(tokenize, detokenize) URLs: llama-cpp-python's /extras/..., else vLLM's (and llama-server's)
        /tokenize; None when the server has neither (probed once)."""
        with self._probing:
            if self._tokenizer is False:
                found = None
                for tokenize, detokenize in TOKENIZERS:
                    # "" shows what the endpoint adds to any text; a server refusing "" is asked for "a"
                    for text in ("", "a"):
                        try:
                            added = self._call_tokenize(self.root + tokenize, text)
                        except ServerError as exc:
                            if exc.status is None:  # unreachable: no answer about the endpoint
                                raise
                            continue
                        self._empty = added if text == "" else []
                        found = (self.root + tokenize, self.root + detokenize)
                        break
                    if found:
                        break
                self._tokenizer = found
        return self._tokenizer

    def _call_tokenize(self, url: str, text: str) -> list[int]:
        # one body for all three servers: llama-cpp-python reads `input`, vLLM `prompt`, llama-server `content`
        answer = self._request(
            "POST",
            url,
            {
                "model": self.model,
                "input": text,
                "prompt": text,
                "content": text,
                "add_special_tokens": False,
                "add_special": False,
            },
        )
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise ServerError(f"{url}: no tokens in {str(answer)[:200]}", 422)
        return [int(t) for t in tokens]

    def tokenize(self, text: str) -> list[int] | None:
        """`text` as the server's token ids, nothing added (no BOS); None without a tokenizer endpoint."""
        paths = self._tokenizer_paths()
        if paths is None:
            return None
        tokens = self._call_tokenize(paths[0], text)
        n = len(self._empty)
        return tokens[n:] if n and tokens[:n] == self._empty else tokens

    def detokenize(self, tokens: list[int]) -> str:
        paths = self._tokenizer_paths()
        answer = self._request("POST", paths[1], {"model": self.model, "tokens": tokens})
        for key in ("text", "prompt", "content"):  # llama-cpp-python, vLLM, llama-server
            if isinstance(answer.get(key), str):
                return answer[key]
        raise ServerError(f"{paths[1]}: no text in {str(answer)[:200]}")

    def _tokens_of(self, options: list[str]) -> list[list[int]] | None:
        """Each option's tokens as it follows the prompt (cached); None without a tokenizer."""
        for option in options:
            if option not in self._option_tokens:
                tokens = self.tokenize(option)
                if tokens is None:
                    return None
                if not tokens:
                    raise ValueError(f"option {option!r} has no tokens")
                if len(self._option_tokens) >= OPTION_CACHE:
                    self._option_tokens.clear()
                self._option_tokens[option] = tokens
        return [self._option_tokens[o] for o in options]

    # -- chat completions that fit the context ----------------------------------------------------
    def _complete(self, chat: Chat, reserve: int, **params) -> tuple[dict, Chat]:
        """One chat completion: (first choice, the chat as sent). A chat too long for the context less
        `reserve` tokens loses its first tokens (see `_trim`) and is sent again, and counted once."""
        trimmed = False
        for _ in range(MAX_TRIMS + 1):
            try:
                answer = self._request("POST", "/chat/completions", {"model": self.model, "messages": chat, **params})
            except ContextOverflow as exc:
                self.n_ctx = min(self.n_ctx or exc.n_ctx, exc.n_ctx)
                if exc.prompt_tokens is None or not self._can_trim():
                    raise
                excess = exc.prompt_tokens - (exc.n_ctx - reserve)
            else:
                try:
                    choice = answer["choices"][0]
                except (KeyError, IndexError, TypeError):
                    raise ServerError(f"{self.base_url}/chat/completions: no choices in {str(answer)[:200]}") from None
                usage = answer.get("usage") or {}
                prompt_tokens = int(usage.get("prompt_tokens", 0) or 0)
                self.stats["prompt_tokens"] += prompt_tokens
                self.stats["generated_tokens"] += int(usage.get("completion_tokens", 0) or 0)
                excess = prompt_tokens - (self.n_ctx - reserve) if self.n_ctx else 0
                if excess <= 0 or not self._can_trim():
                    self.stats["truncated_prompts"] += trimmed
                    return choice, chat
            if self.n_ctx <= reserve:
                raise ServerError(f"{self.base_url}: {reserve} tokens asked for, the context holds {self.n_ctx}")
            chat, trimmed = self._trim(chat, excess), True
        raise ServerError(f"{self.base_url}/chat/completions: the prompt still overflows after {MAX_TRIMS} cuts")

    def _can_trim(self) -> bool:
        if self._tokenizer_paths() is None:
            self._warn_once(
                "no-tokenizer-truncation",
                "the server has no tokenizer endpoint; prompts longer than "
                "its context are not cut (they fail, or the server cuts them its own way)",
            )
            return False
        return True

    def _trim(self, chat: Chat, excess: int) -> Chat:
        """`chat` without the first `excess` tokens of its text, the earliest messages first (each keeps
        its role and template tokens; a message cut whole is left empty)."""
        out = []
        for message in chat:
            message = dict(message)
            if excess > 0 and message.get("content"):
                tokens = self.tokenize(message["content"])
                cut = min(excess, len(tokens))
                message["content"] = self.detokenize(tokens[cut:]) if cut < len(tokens) else ""
                excess -= cut
            out.append(message)
        if excess > 0:
            raise ServerError(f"{self.base_url}: the chat template alone overflows the context ({self.n_ctx} tokens)")
        return out

    def _chat(self, chats: list[Chat], reserve: int, **params) -> list[dict]:
        """One chat completion per chat, concurrently, in order: the first choice of each."""
        return [choice for choice, _ in self.pool.map(lambda chat: self._complete(chat, reserve, **params), chats)]

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
    def generate(
        self,
        chats: list[Chat],
        max_tokens: int = 256,
        choices: list[str] | None = None,
        grammar: str | None = None,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> list[str]:
        if choices is not None:
            max_tokens = max(len(c) for c in choices) + 1  # characters bound the tokens from above
        params = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.config.seed,
            **self._constraint(choices, grammar),
        }
        if stop:
            params["stop"] = stop
        texts = [(c.get("message") or {}).get("content") or "" for c in self._chat(chats, max_tokens, **params)]
        if choices is not None:
            texts = [_closest(text, choices) for text in texts]
        self.stats["generated"] += len(chats)
        return texts

    def score_options(self, chats: list[Chat], options: list[str], normalise: bool = True) -> np.ndarray:
        if not options:
            raise ValueError("options must not be empty")
        tokens = self._tokens_of(options)
        whole = tokens is not None and max(map(len, tokens)) > 1
        if whole and self.kind == "vllm":
            out = self._score_echoed(chats, tokens)
        elif whole and self.kind == "llamacpp":
            out = self._score_forced(chats, options, tokens)
        else:
            if whole or (tokens is None and any(len(o.strip()) > 1 for o in options)):
                why = "no tokenizer endpoint" if tokens is None else "a server neither vLLM nor llama.cpp"
                self._warn_once("first-token", f"options of several tokens scored by their first token only ({why})")
            out = self._score_first(chats, options, reserve=max(map(len, tokens)) + 1 if tokens else 2)
        self.stats["scored"] += len(chats)
        return normalise_logprobs(out) if normalise else out

    def _score_first(self, chats: list[Chat], options: list[str], reserve: int) -> np.ndarray:
        """One token with top_logprobs per chat; each option's log-prob read from that position."""
        answers = self._chat(chats, reserve, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
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
            for row, text in zip(fallback, picked, strict=True):
                out[row] = np.where(np.array(options) == text, 0.0, -30.0)
        return out

    def _score_forced(self, chats: list[Chat], options: list[str], tokens: list[list[int]]) -> np.ndarray:
        """llama.cpp's servers: each option generated under a grammar of its text and a logit bias on its
        tokens (so it is produced in exactly those tokens); the reported log-probs are the raw ones. A
        chat's options go one after the other, so the server's prompt cache serves all but the first (and
        on llama-cpp-python's one-at-a-time server, one chat after the other)."""
        reserve = max(map(len, tokens)) + 1

        def one(chat: Chat) -> list[float]:
            row = []
            for option, ids in zip(options, tokens, strict=True):
                choice, chat = self._complete(
                    chat,
                    reserve,
                    max_tokens=len(ids),
                    temperature=0.0,
                    seed=self.config.seed,
                    logprobs=True,
                    top_logprobs=1,
                    logit_bias={str(t): FORCE_BIAS for t in ids},
                    grammar=choices_grammar([option]),
                )
                content = (choice.get("logprobs") or {}).get("content") or []
                logprobs = [c.get("logprob") for c in content if isinstance(c, dict)]
                if len(logprobs) != len(ids) or any(lp is None for lp in logprobs):
                    raise ServerError(
                        f"{self.base_url}/chat/completions: forced {option!r} ({len(ids)} tokens), "
                        f"got {len(logprobs)} log-probs: {str(content)[:200]}"
                    )
                row.append(sum(float(lp) for lp in logprobs))
            return row

        return np.array(list((map if self.serial else self.pool.map)(one, chats)), dtype=np.float64)

    def _score_echoed(self, chats: list[Chat], tokens: list[list[int]]) -> np.ndarray:
        """vLLM: prompt tokens + option tokens to /completions with echo; the option's prompt log-probs add
        up. The prompt's tokens are cut exactly as the offline engine cuts them."""
        reserve = max(map(len, tokens)) + 1
        prompts = list(self.pool.map(lambda chat: self._prompt_tokens(chat, reserve), chats))

        def one(job: tuple[int, int]) -> float:
            prompt, option = prompts[job[0]], tokens[job[1]]
            answer = self._request(
                "POST",
                "/completions",
                {
                    "model": self.model,
                    "prompt": prompt + option,
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "echo": True,
                    "logprobs": 1,
                },
            )
            try:
                logprobs = answer["choices"][0]["logprobs"]["token_logprobs"][len(prompt) : len(prompt) + len(option)]
                total = sum(float(lp) for lp in logprobs)
            except (KeyError, IndexError, TypeError, ValueError):
                raise ServerError(f"{self.base_url}/completions: no prompt log-probs in {str(answer)[:200]}") from None
            if len(logprobs) != len(option):
                raise ServerError(
                    f"{self.base_url}/completions: {len(logprobs)} prompt log-probs, {len(option)} option tokens"
                )
            self.stats["prompt_tokens"] += len(prompt) + len(option)
            return total

        jobs = [(row, col) for row in range(len(chats)) for col in range(len(tokens))]
        return np.array(list(self.pool.map(one, jobs)), dtype=np.float64).reshape(len(chats), len(tokens))

    def _prompt_tokens(self, chat: Chat, reserve: int) -> list[int]:
        """vLLM: the chat in the served model's template, as tokens; an over-long one keeps its last."""
        answer = self._request(
            "POST", f"{self.root}/tokenize", {"model": self.model, "messages": chat, "add_generation_prompt": True}
        )
        tokens = [int(t) for t in answer.get("tokens") or []]
        n_ctx = self.n_ctx or int(answer.get("max_model_len") or 0)
        if n_ctx and len(tokens) > n_ctx - reserve:
            self.stats["truncated_prompts"] += 1
            tokens = tokens[-(n_ctx - reserve) :]
        return tokens

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
