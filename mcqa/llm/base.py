"""The one small protocol every LLM backend speaks (the idea of lm-evaluation-harness's `LM`).

Two batch methods are enough for the whole agent:
- `generate`: free text, or text constrained to a set of strings or a GBNF grammar;
- `score_options`: the log-probability of each option string as the next thing the assistant
  says (letters, TRUE/FALSE, Yes/No), normalised over the options.

Both take a batch of chats, so a backend that batches (vLLM) keeps the device busy and one that
does not (llama.cpp) loops; nodes of the agent never know which backend runs.
"""

from __future__ import annotations

import abc
from collections import Counter

import numpy as np

Chat = list[dict[str, str]]  # [{"role": "system" | "user" | "assistant", "content": "..."}]
OPTION_CACHE = 4096  # option strings whose tokens a backend keeps (letters repeat; cloze choice texts do not)


class LLM(abc.ABC):
    """A chat model behind the two batch methods. `stats` counts tokens for benchmarks and reports."""

    name: str = "llm"

    def __init__(self) -> None:
        self.stats: Counter = Counter()

    @abc.abstractmethod
    def generate(
        self,
        chats: list[Chat],
        max_tokens: int = 256,
        choices: list[str] | None = None,
        grammar: str | None = None,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> list[str]:
        """One completion per chat. `choices` restricts the output to exactly one of those strings;
        `grammar` (GBNF) to that grammar. Greedy unless `temperature` > 0."""

    @abc.abstractmethod
    def score_options(self, chats: list[Chat], options: list[str], normalise: bool = True) -> np.ndarray:
        """Array (len(chats), len(options)) of log-probabilities, each row normalised over `options`.

        `normalise=False` gives each option's raw log-likelihood instead (the sum over its tokens, as
        lm-evaluation-harness's `loglikelihood`): what cloze scoring divides by the option's length."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Free the model (a no-op where nothing needs freeing)."""


def normalise_logprobs(scores: np.ndarray) -> np.ndarray:
    """Rows of raw log-scores -> log-probabilities that sum to 1 over each row (stable log-softmax)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def choices_grammar(choices: list[str]) -> str:
    """A GBNF grammar whose only sentences are the given strings (e.g. root ::= "A" | "B")."""
    if not choices:
        raise ValueError("choices must not be empty")

    def literal(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return "root ::= " + " | ".join(literal(c) for c in choices)
