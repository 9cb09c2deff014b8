"""LLM backends behind one protocol (`mcqa.llm.base.LLM`); `load_llm` picks one from the config."""

from __future__ import annotations

from mcqa.config import LLMConfig
from mcqa.llm.base import LLM, Chat, choices_grammar, normalise_logprobs

BACKENDS = ("llamacpp",)


def load_llm(config: LLMConfig | None = None) -> LLM:
    """The backend named by `config.backend`, with its model loaded."""
    config = config or LLMConfig()
    if config.backend == "llamacpp":
        from mcqa.llm.llamacpp import LlamaCppLLM

        return LlamaCppLLM(config)
    raise ValueError(f"unknown LLM backend {config.backend!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LLM", "Chat", "LLMConfig", "choices_grammar", "load_llm", "normalise_logprobs"]
