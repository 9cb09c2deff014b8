"""llama.cpp through llama-cpp-python: the embedded CPU default, serving GGUF files.

Scores come from the logits at the answer position (as nanochat evaluates multiple choice), read
without `logits_all` (which costs over a gigabyte): evaluate the prompt, read the last row of
logits, and for an option longer than one token feed its tokens one at a time. The prompt's KV
cache is kept between calls and reused up to the longest common prefix, so the shared system prompt
and few-shot examples are evaluated once, not once per item.

The cache holds one sequence, but the agent's nodes each take a whole batch: item 1's verify prompt
extends item 1's answer prompt, yet comes after item 8's. So the KV state of each evaluated prompt
is also saved (llama_state_seq_get_data: that sequence's cells only, ~25 KB a token) in a small
LRU (`prompt_cache_mb`) and restored when a later prompt extends it further than the live cache.

llama.cpp runs a batch of one token through other kernels than a batch of several, and the logits
differ (by 0.1 nats on SmolLM2 Q4_1). So every evaluation here re-runs at least the last two tokens:
a score never depends on what happened to be in the cache.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mcqa.config import LLMConfig
from mcqa.llm.base import LLM, OPTION_CACHE, Chat, choices_grammar, normalise_logprobs
from mcqa.models import resolve

MIN_EVAL = 2  # tokens re-run on every evaluation, so logits never come from the one-token kernels

# Used only when a GGUF carries no chat template (base models).
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LlamaCppLLM(LLM):
    name = "llamacpp"

    def __init__(self, config: LLMConfig | None = None):
        super().__init__()
        from mcqa.extras import require

        llama_cpp = require("llama_cpp", "llm", "the llama.cpp backend")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.config = config or LLMConfig()
        self.path = resolve(self.config.model, "llm")
        self.llm = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.config.n_ctx,
            n_batch=self.config.n_batch,
            n_threads=self.config.n_threads,
            n_threads_batch=self.config.n_threads,
            seed=self.config.seed,
            logits_all=False,
            verbose=False,
            lora_path=str(Path(self.config.lora).expanduser()) if self.config.lora else None,
        )
        self._grammar_type = llama_cpp.LlamaGrammar
        metadata = self.llm.metadata
        template = metadata.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        vocab = self.llm._model

        def token_text(key: str) -> str:
            token_id = int(metadata.get(key, -1))
            return vocab.token_get_text(token_id) if token_id >= 0 else ""

        self.formatter = Jinja2ChatFormatter(
            template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
        )
        self.states = PrefixStates(self.config.prompt_cache_mb << 20) if self.config.prompt_cache_mb > 0 else None
        self._grammars: dict[str, object] = {}
        self._option_tokens: dict[str, list[int]] = {}

    # -- prompts -----------------------------------------------------------------------------
    def prompt_tokens(self, chat: Chat, reserve: int = 8) -> list[int]:
        """The chat rendered with the model's own template (ending where the assistant speaks), as
        tokens. A prompt that would overflow the context keeps its last tokens and is counted."""
        rendered = self.formatter(messages=chat)
        tokens = self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        limit = self.config.n_ctx - reserve
        if len(tokens) > limit:
            self.stats["truncated_prompts"] += 1
            tokens = tokens[-limit:]
        return tokens

    def _eval_prompt(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens`, reusing the cached common prefix; return the next-token logits."""
        llm = self.llm
        common = _common_prefix(llm.input_ids[: llm.n_tokens], tokens, len(tokens) - MIN_EVAL)
        if self.states is not None:
            saved, length = self.states.best(tokens, len(tokens) - MIN_EVAL)
            if saved is not None and length > common + MIN_EVAL:
                self.states.restore(llm, saved)
                common = length
                self.stats["restored_states"] += 1
        llm.n_tokens = common
        llm.eval(tokens[common:])
        self.stats["prompt_tokens"] += len(tokens)
        self.stats["cached_tokens"] += common
        if self.states is not None:
            self.states.save(llm, tokens)
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).astype(np.float64)

    def _tokens_of(self, option: str) -> list[int]:
        if option not in self._option_tokens:
            tokens = self.llm.tokenize(option.encode("utf-8"), add_bos=False, special=False)
            if not tokens:
                raise ValueError(f"option {option!r} has no tokens")
            if len(self._option_tokens) >= OPTION_CACHE:
                self._option_tokens.clear()
            self._option_tokens[option] = tokens
        return self._option_tokens[option]

    # -- the protocol --------------------------------------------------------------------------
    def score_options(self, chats: list[Chat], options: list[str], normalise: bool = True) -> np.ndarray:
        if not options:
            raise ValueError("options must not be empty")
        option_tokens = [self._tokens_of(o) for o in options]
        out = np.empty((len(chats), len(options)))
        for row, chat in enumerate(chats):
            prompt = self.prompt_tokens(chat, reserve=max(map(len, option_tokens)) + 1)
            first = _log_softmax(self._eval_prompt(prompt))
            for col, tokens in enumerate(option_tokens):
                out[row, col] = first[tokens[0]] + (self._continuation(prompt, tokens) if len(tokens) > 1 else 0.0)
        self.stats["scored"] += len(chats)
        return normalise_logprobs(out) if normalise else out

    def _continuation(self, prompt: list[int], tokens: list[int]) -> float:
        """log P(tokens[1:] | prompt + tokens[0]) from one decode with logits at every position (the
        prompt's last token, then the option's tokens but the last: row j predicts tokens[j]); the KV
        cache is then rewound to the prompt, so the next option starts from the same place."""
        import llama_cpp

        llm, start = self.llm, len(prompt) - 1
        sequence = prompt[-1:] + tokens[:-1]
        total = 0.0
        for offset in range(0, len(sequence), llm.n_batch):  # an option longer than a batch: in chunks
            chunk = sequence[offset : offset + llm.n_batch]
            llm._ctx.kv_cache_seq_rm(0, start + offset, -1)
            llm._batch.set_batch(batch=chunk, n_past=start + offset, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm._ctx.ctx), shape=(len(chunk), llm.n_vocab()))
            for j in range(len(chunk)):
                position = offset + j  # predicts tokens[position]; tokens[0] was scored from the prompt
                if position:
                    total += _log_softmax(logits[j].astype(np.float64))[tokens[position]]
        self.stats["option_tokens"] += len(tokens)
        llm._ctx.kv_cache_seq_rm(0, start, -1)  # the prompt's last token is evaluated again by the next eval
        llm.n_tokens = start
        return total

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
            grammar = choices_grammar(choices)
            max_tokens = max(len(self._tokens_of(c)) for c in choices) + 1
        compiled = self._grammar(grammar) if grammar else None
        texts = []
        for chat in chats:
            prompt = self.prompt_tokens(chat, reserve=max_tokens)
            result = self.llm.create_completion(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                top_k=0 if temperature == 0 else 40,
                seed=self.config.seed,
                grammar=compiled,
                stop=stop or [],
            )
            usage = result["usage"]
            self.stats["prompt_tokens"] += usage["prompt_tokens"]
            self.stats["generated_tokens"] += usage["completion_tokens"]
            texts.append(result["choices"][0]["text"])
        self.stats["generated"] += len(chats)
        return texts

    def _grammar(self, grammar: str):
        if grammar not in self._grammars:
            self._grammars[grammar] = self._grammar_type.from_string(grammar, verbose=False)
        return self._grammars[grammar]

    def close(self) -> None:
        self.llm.close()


def _common_prefix(a, b, limit: int) -> int:
    """Length of the common prefix of two token sequences, at most `limit` (vectorised)."""
    n = max(0, min(len(a), len(b), limit))
    if n == 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if len(differ) else n


class PrefixStates:
    """An LRU of saved KV states of sequence 0, keyed by the prompt tokens they hold."""

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self.saved: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.size = 0

    def best(self, tokens: list[int], limit: int) -> tuple[tuple[int, ...] | None, int]:
        """The saved prompt sharing the longest prefix with `tokens` (at most `limit`) and that length."""
        best, length = None, 0
        for key in self.saved:
            common = _common_prefix(key, tokens, limit)
            # a saved state is usable only up to where it agrees; it holds len(key) positions
            if common > length:
                best, length = key, common
        return best, length

    def save(self, llm, tokens: list[int]) -> None:
        import llama_cpp

        key = tuple(tokens)
        if key in self.saved:
            self.saved.move_to_end(key)
            return
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        self.saved[key] = bytes(buffer)[:written]
        self.size += written
        while self.size > self.capacity and self.saved:
            _, dropped = self.saved.popitem(last=False)
            self.size -= len(dropped)

    def restore(self, llm, key: tuple[int, ...]) -> None:
        """Load the saved state into sequence 0; the caller then trims it to the shared prefix."""
        import llama_cpp

        data = self.saved[key]
        self.saved.move_to_end(key)
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(data), 0) == 0:
            raise RuntimeError("llama.cpp refused a saved prompt state")
        llm.input_ids[: len(key)] = key
        llm.n_tokens = len(key)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())
