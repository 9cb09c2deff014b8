"""LLM backends behind one protocol (`mcqa.llm.base.LLM`); `load_llm` picks one from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcqa.llm.base import LLM, Chat, choices_grammar, normalise_logprobs

if TYPE_CHECKING:  # mcqa.config imports the agent's prompts, which import this package
    from mcqa.config import LLMConfig

BACKENDS = ("llamacpp", "vllm", "openai")


def load_llm(config: LLMConfig | None = None) -> LLM:
    """The backend named by `config.backend`, with its model loaded."""
    from mcqa.config import LLMConfig

    config = config or LLMConfig()
    if config.backend == "llamacpp":
        from mcqa.llm.llamacpp import LlamaCppLLM

        return LlamaCppLLM(config)
    if config.backend == "vllm":
        from mcqa.llm.vllm_engine import VLLMEngineLLM

        return VLLMEngineLLM(config)
    if config.backend == "openai":
        from mcqa.llm.openai_api import OpenAIServerLLM

        return OpenAIServerLLM(config)
    raise ValueError(f"unknown LLM backend {config.backend!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LLM", "Chat", "choices_grammar", "load_llm", "normalise_logprobs"]
