"""mcqa: solve multiple-choice benchmarks with an LLM agent and find the misconception behind a wrong answer.

The Python API lives here (mcqa.api, loaded on first use so `import mcqa` stays light):

    import mcqa
    items = mcqa.load("arc_challenge", split="test", limit=20)
    run = mcqa.evaluate("arc_challenge", split="test", limit=20, out="runs/arc-zs")
    mcqa.compare("runs/arc-zs", "runs/arc-k4")

Importing mcqa changes nothing for other libraries in the process: mcqa loads its models from local
files (`local_files_only`), and only the `mcqa` command sets the hub-offline flags process-wide.
A notebook that wants the same calls `mcqa.hub_offline()`.
"""

import os

from mcqa.types import Item, Misconception, Prediction

__version__ = "0.1.0"

HUB_OFFLINE_FLAGS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
_API = ("Agent", "Comparison", "Run", "Trace", "compare", "configure", "evaluate", "load", "open_run")


def hub_offline() -> None:
    """Turn Hugging Face hub access off for the whole process (flags already set are kept). Where the
    hub is unreachable (Kaggle offline, a sealed machine) a hub name then fails at once instead of
    retrying for a minute. Call it before importing transformers or huggingface_hub."""
    for flag, value in HUB_OFFLINE_FLAGS.items():
        os.environ.setdefault(flag, value)


def __getattr__(name: str):
    if name in _API:
        from mcqa import api

        return getattr(api, name)
    raise AttributeError(f"module 'mcqa' has no attribute {name!r}")


__all__ = ["Item", "Misconception", "Prediction", "__version__", "hub_offline", *_API]
