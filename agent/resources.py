"""What the nodes call: the LLM, the embedder, the example store, the misconception index (and an
ensemble's other ones), the label store, the classifier, the reranker. Each is loaded on first use
and once per process, so a graph that only answers never loads an embedder and a replayed trace
loads nothing at all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mcqa.config import Config

if TYPE_CHECKING:
    import numpy as np


class Resources:
    def __init__(
        self,
        config: Config,
        dataset: str | None = None,
        data_root: Path | None = None,
        llm=None,
        split: str | None = None,
    ):
        self.config, self.dataset, self.data_root, self.split = config, dataset, data_root, split
        self.agent = config.agent.for_dataset(dataset)  # the agent section with its by-dataset defaults
        if llm is not None:
            self.__dict__["llm"] = llm  # share an already loaded model (tests, benchmarks)

    @cached_property
    def llm(self):
        from mcqa.llm import load_llm

        return load_llm(self.config.llm)

    @cached_property
    def embedder(self):
        from mcqa.rag import Embedder

        return Embedder(self.agent.embedder)

    @cached_property
    def examples(self):
        from mcqa.rag.cache import load_or_build_examples

        return load_or_build_examples(self.examples_source, self.embedder, self.data_root)

    @cached_property
    def examples_source(self):
        """Where few-shot examples come from (mcqa.rag.sources): the agent's `examples` if set, else
        `examples_split` of the dataset being solved. Names are checked here, files by `check`."""
        from mcqa.rag.sources import ExampleSource

        if self.agent.examples is None:
            if not self.dataset:
                raise ValueError(
                    "few-shot examples need a source: solve a named dataset (they come from its "
                    "examples_split) or set agent.examples to DATASET:SPLIT or a file"
                )
            return ExampleSource.parse(f"{self.dataset}:{self.examples_split}")
        source = ExampleSource.parse(self.agent.examples, self.agent.examples_columns)
        if source.dataset is not None and source.dataset == self.dataset:
            source = ExampleSource(source.dataset, self._away_from_solved(source.split))
        return source

    @property
    def examples_split(self) -> str:
        """The split of the dataset being solved that `examples_split` names, as `_away_from_solved` moves it."""
        return self._away_from_solved(self.agent.examples_split)

    def _away_from_solved(self, wanted: str) -> str:
        """Solving `validation` (held out of train), examples come from `fit`, the rest of train:
        otherwise the other validation items' answers would be examples."""
        if wanted == "train" and self.split in ("validation", "validation-unseen", "validation-inner"):
            return self.split.replace("validation", "fit")
        return wanted

    @cached_property
    def misconceptions(self):
        from mcqa.rag import load_or_build_misconception_index

        self._need_dataset("misconception retrieval")
        return load_or_build_misconception_index(self.dataset, self.embedder, self.data_root)

    @cached_property
    def extra_misconceptions(self):
        """The misconception index of each of `embedders`, the ensemble's other members, in order: each
        built with its own embedder on first use and cached, as `misconceptions` is."""
        from mcqa.rag import Embedder, load_or_build_misconception_index

        self._need_dataset("misconception retrieval")
        return [
            load_or_build_misconception_index(self.dataset, Embedder(name), self.data_root)
            for name in self.agent.embedders or []
        ]

    @cached_property
    def query_bank(self) -> tuple[list[str], list[np.ndarray]]:
        """Every wrong answer of the split being solved as a query in the agent's format, and its vectors by
        each misconception index's embedder (`misconceptions`, then `extra_misconceptions`): the bank behind
        `hub_penalties`, and where propose_misconceptions looks its queries up instead of encoding them a
        second time (the same texts, unless `think` adds to them). Empty without a split.

        The bank is the whole split, not the batch, so an item's list never depends on which items were
        solved with it (a step-through of one item ranks as the batch run did). Its vectors are cached on
        disk (Embedder.encode_cached): a second run of the split encodes nothing for it.
        """
        from mcqa.rag.splits import load_items

        return self.query_bank_of(load_items(self.dataset, self.split, self.data_root) if self.split else [])

    def query_bank_of(self, items: list) -> tuple[list[str], list[np.ndarray]]:
        """`query_bank` over these items' wrong answers (a Kaggle run passes its test file)."""
        from mcqa.rag import DEFAULT_QUERY_FORMAT, QUERY_FORMATS
        from mcqa.rag.retrieval import bank_texts

        texts = bank_texts(items, QUERY_FORMATS[self.agent.query_format or DEFAULT_QUERY_FORMAT])
        return texts, [
            index.embedder.encode_cached(texts, "query", progress=False)
            if texts
            else index.embedder.encode([], "query")
            for index in self._misconception_indexes()
        ]

    @cached_property
    def hub_penalties(self) -> list:
        """Per misconception index (`misconceptions`, then `extra_misconceptions`), what its search subtracts
        from each misconception's cosine (mcqa.rag.retrieval.hub_penalty), or None: `hubness` times the hub
        scores over `query_bank`. None without a split: a bank under `hubness_k` queries gives none.
        """
        from mcqa.rag.retrieval import hub_penalty

        if not self.agent.hubness:
            return [None] * (1 + len(self.agent.embedders or []))
        return [
            hub_penalty(index, bank, self.agent.hubness, self.agent.hubness_k)
            for index, bank in zip(self._misconception_indexes(), self.query_bank[1], strict=True)
        ]

    def _misconception_indexes(self) -> list:
        return [self.misconceptions, *(self.extra_misconceptions if self.agent.embedders else [])]

    @cached_property
    def labels(self):
        """Labelled answers of the examples split, whose labels vote (written in the agent's query format)."""
        from mcqa.rag import DEFAULT_QUERY_FORMAT, load_or_build_label_store

        self._need_dataset("label votes")
        return load_or_build_label_store(
            self.dataset,
            self.examples_split,
            self.embedder,
            self.agent.query_format or DEFAULT_QUERY_FORMAT,
            self.data_root,
        )

    @cached_property
    def classifier(self):
        """The label head: `auto` fits one on the label store (cached); a folder is loaded and
        refused unless it was trained on this embedder."""
        from mcqa.finetune.classifier import LabelClassifier, load_or_fit_classifier

        if self.agent.classifier == "auto":
            return load_or_fit_classifier(self.labels)
        head = LabelClassifier.load(self.agent.classifier)
        if head.meta.get("embedder") != self.embedder.name:
            raise ValueError(
                f"{self.agent.classifier} was trained on the embedder {head.meta.get('embedder')!r}, "
                f"not {self.embedder.name!r}: its weights mean nothing to these vectors"
            )
        return head

    @cached_property
    def seqclass(self):
        """The fine-tuned sequence classifier (torch where installed, else numpy: mcqa.finetune.seqclass)."""
        from mcqa.finetune.seqclass import load_seqclass

        return load_seqclass(self.agent.seqclass)

    @cached_property
    def ngram(self):
        """The n-gram classifier: `auto` fits one on the label store (cached); a folder is loaded."""
        from mcqa.finetune.ngram import NgramClassifier, load_or_fit_ngram

        if self.agent.ngram == "auto":
            return load_or_fit_ngram(self.labels)
        return NgramClassifier.load(self.agent.ngram)

    @cached_property
    def cross_encoder(self):
        from mcqa.extras import require

        require("sentence_transformers", "retrieval", "the CrossEncoder reranker")
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.agent.reranker, device="cpu", local_files_only=True)

    def check(self, nodes: list[str]) -> None:
        """A ValueError now, naming what is wrong, if a resource these nodes need cannot be found (a few-shot
        source: unknown dataset or split, missing file), rather than an error on every item of a run."""
        if "retrieve_examples" in nodes:
            self.examples_source.check(self.data_root)

    def _need_dataset(self, what: str) -> None:
        if not self.dataset:
            raise ValueError(f"{what} needs a dataset with a train split or catalogue (eedi, map, ...)")
