"""mcqa: solve multiple-choice benchmarks with an LLM agent and find the misconception behind a wrong answer."""

import os

# Model hubs are unreachable where mcqa runs (Kaggle offline, sealed CI): without these a hub name
# retries for a minute before failing. With them it fails at once with a clear error.
for _flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_flag, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mcqa.types import Item, Misconception, Prediction  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Item", "Misconception", "Prediction", "__version__"]
