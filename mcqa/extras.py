"""Install by need: which pip extra each optional library belongs to, and one clear line when it is missing.

The core of mcqa-agent (pydantic, typer, rich, numpy, pyyaml, the LangGraph graph) runs `mcqa data`,
`mcqa models`, `mcqa trace show` and `mcqa kaggle validate`; each job adds the extra it imports
(pyproject.toml's `[project.optional-dependencies]`, the table below). A command that reaches for a
library of an extra that is not installed stops with `MissingExtra`, whose message is the one line the
CLI prints (mcqa.cli_common.Group) instead of a traceback:

    the llama.cpp backend needs the 'llm' extra: pip install 'mcqa-agent[llm]'

`require` is used where an optional library is imported; `check_resources` says it before a run
starts, from the resources its nodes call (mcqa.agent.graph.Agent.resources_used), so a batch run
stops at once rather than recording the same ImportError on every item; `extras_for` is what a
Kaggle bundle installs (mcqa.kaggle.bundle).

Retrieval at inference has a light way in: the `embed` extra (faiss, tokenizers) runs BERT-family
embedders such as MiniLM with numpy (mcqa.rag.numpy_encoder) and searches prebuilt indexes; `retrieval`
(which includes it) adds sentence-transformers and torch for any embedder, training and CrossEncoders.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

DISTRIBUTION = "mcqa-agent"

# extra -> the modules mcqa imports from it (top-level names). pyproject.toml lists their packages.
MODULES: dict[str, tuple[str, ...]] = {
    "llm": ("llama_cpp",),
    "embed": ("faiss", "tokenizers"),  # the numpy embedder and FAISS: retrieval at inference, no torch
    "retrieval": ("sentence_transformers", "torch", "transformers", "sklearn"),  # and embed's (included)
    "train": ("peft", "trl", "accelerate", "datasets", "gguf"),  # and retrieval's (the extra includes it)
    "reports": ("matplotlib", "pandas"),  # report.html's figures; Run.dataframe() and Comparison.table()
    "openai": ("httpx",),
    "parquet": ("pyarrow",),
    "serve": ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"),  # llama.cpp's server
}
# extras that install others too
INCLUDES = {"retrieval": ("embed",), "train": ("retrieval",), "serve": ("llm", "openai")}

# The agent's resources (named as mcqa.agent.resources.Resources names them) -> the extra they import.
# "llm" depends on the backend (BACKENDS). A bundled classifier is read with numpy; `auto` fits one
# with scikit-learn, which the retrieval extra brings.
RESOURCES = {
    "embedder": "retrieval",
    "examples": "retrieval",
    "misconceptions": "retrieval",
    "extra_misconceptions": "retrieval",
    "hub_penalties": "retrieval",
    "labels": "retrieval",
    "classifier": "retrieval",
    "seqclass": "retrieval",
    "ngram": "retrieval",
    "cross_encoder": "retrieval",
}
# What `embed` alone serves when every embedder (and a seqclass model) runs with numpy and the classifier
# is a fitted head (a Kaggle bundle's, whose indexes are prebuilt): all but the CrossEncoder, which is
# sentence-transformers.
LIGHT = set(RESOURCES) - {"cross_encoder"}
# llm.backend -> extra. vLLM is no extra: it lives in its own venv under its own pins (Makefile install-vllm).
BACKENDS = {"llamacpp": "llm", "openai": "openai"}
WHAT = {
    "llm": "the LLM",
    "embedder": "the embedder",
    "examples": "the few-shot example store",
    "misconceptions": "the misconception index",
    "extra_misconceptions": "the ensemble's misconception indexes",
    "hub_penalties": "the hubness priors",
    "labels": "the label store",
    "classifier": "the label classifier",
    "seqclass": "the fine-tuned sequence classifier",
    "ngram": "the n-gram classifier",
    "cross_encoder": "the CrossEncoder reranker",
}


def install_command(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class MissingExtra(ImportError):
    """A library of a pip extra that is not installed. Its message is the whole story, in one line."""

    def __init__(self, module: str, extra: str, what: str):
        self.module, self.extra, self.what = module, extra, what
        super().__init__(f"{what} needs the '{extra}' extra: {install_command(extra)}", name=module)


def installed(module: str) -> bool:
    """Whether `module` (a top-level name) can be imported, without importing it (sentence-transformers
    alone takes 7-9 s)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package, or a module set to None in sys.modules
        return False


def require(module: str, extra: str, what: str) -> ModuleType:
    """`import module`, or MissingExtra naming `extra` if it (or a library it needs) is not installed.

    `what` is the job that needs it, as the line should say it: "report.html's figures", "FAISS indexes"."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(exc.name or module, extra, what) from exc


def modules_of(extra: str) -> tuple[str, ...]:
    return MODULES[extra] + tuple(m for inner in INCLUDES.get(extra, ()) for m in modules_of(inner))


def check(extra: str, what: str) -> None:
    """MissingExtra now if a module of `extra` is not installed (checked without importing it)."""
    for module in modules_of(extra):
        if not installed(module):
            raise MissingExtra(module, extra, what)


def extras_for(used: Iterable[str], backend: str = "llamacpp", light: bool = False) -> list[str]:
    """The extras a run needs whose nodes call the resources `used` (Agent.resources_used()), sorted:
    what a Kaggle bundle installs with mcqa, e.g. ['retrieval'] for Eedi and MAP, ['llm'] for CodeMMLU.

    `light`: every embedder of the run is one the numpy encoder runs and the classifiers (if any) are
    fitted (the head, the n-gram classifier), so retrieval needs only `embed` (['embed'] for a Kaggle
    bundle of Eedi or MAP); a CrossEncoder still needs `retrieval`, which includes `embed`."""
    used = set(used)
    extras = {"embed" if light and r in LIGHT else RESOURCES[r] for r in used if r in RESOURCES}
    if "llm" in used and backend in BACKENDS:
        extras.add(BACKENDS[backend])
    if "retrieval" in extras:
        extras.discard("embed")
    return sorted(extras)


def requirement(extras: Iterable[str]) -> str:
    """`mcqa-agent[a,b]`, or `mcqa-agent` without extras."""
    extras = sorted(set(extras))
    return f"{DISTRIBUTION}[{','.join(extras)}]" if extras else DISTRIBUTION


def check_resources(used: Iterable[str], backend: str = "llamacpp") -> None:
    """MissingExtra before a run starts if a resource its nodes call needs an extra that is not installed
    (the first one found, in a fixed order, so the line is the same every time). The `embed` extra alone
    passes for the resources it can serve (LIGHT): whether the embedder then runs with numpy is the
    Embedder's to say, in one line naming `retrieval` if it cannot (mcqa.rag.embedder.choose_backend)."""
    used = set(used)
    for resource in ["llm", *sorted(RESOURCES)]:
        if resource not in used:
            continue
        extra = BACKENDS.get(backend) if resource == "llm" else RESOURCES[resource]
        if extra is None:
            continue
        what = f"{WHAT[resource]} ({backend} backend)" if resource == "llm" else WHAT[resource]
        if resource in LIGHT and all(installed(m) for m in modules_of("embed")):
            continue
        check(extra, what)
