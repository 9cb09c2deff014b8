"""The agent's knobs: which steps run and how. Few, each documented, all with working defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcqa.agent.prompts import Prompts

Task = Literal["answer", "misconceptions"]

# Label evidence by dataset (votes, vote_threshold, vote_weight, classifier, classifier_weight), with MiniLM:
# - map: neighbours among the same question's responses with the same answer, and the head (`classifier:
#   auto`, a logistic regression on the label store's vectors, fitted at first use in about 20 s, cached).
#   Catalogue alone: MAP@3 0.419 on `validation` (--set agent.votes=0). k, threshold, vote weight and head
#   weight were chosen by `mcqa train map-fusion` on `validation-inner` (4,697 responses; the store and head
#   from `fit-inner`): k 5, 0.8, 10, head 10 scored 0.9104 there against 0.903 for the weights before (k 25,
#   0.7, 10, head 3, picked on `validation` itself); the votes alone 0.891, the head alone 0.908. The n-gram
#   classifier (`ngram: auto`, word and character TF-IDF with a regression per answer, fitted at first use in
#   about 12 s; mcqa.finetune.ngram) scores 0.916 alone there; with it the grid of map-fusion-default.yaml
#   chose k 5, 0.8, 10, head 3, n-gram 10: 0.9203 against 0.9104. Reported once on the whole `validation`
#   (`mcqa eval run --dataset map --split validation --batch-size 256 --no-traces [--set agent.ngram=none
#   --set agent.classifier_weight=10]`, paired with `mcqa eval compare`): 0.9121 -> 0.9207, +0.009 [+0.005,
#   +0.013]. A fine-tuned sequence classifier (`seqclass`, finetune/configs/agent-map-best.yaml) adds to
#   them; docs/results.md.
# - eedi: the threshold trades seen against unseen labels; k 10, weight 0.8, MAP@25 on an inner split of
#   fit (seed 1) | the same of fit-unseen in unseen mode: no votes 0.163 | 0.199; 0.7: 0.332 | 0.173;
#   0.8: 0.318 | 0.189; 0.9: 0.264 | 0.198; 0.95: 0.216 | 0.199. 0.9 is the lowest threshold that costs
#   unseen nothing there, so the default is 0.9 (chosen there, never on `validation`). Reported once on the
#   shared splits with the retrieval priors on, at ccf7814 (`mcqa eval run --dataset eedi --split validation |
#   validation-unseen --batch-size 64 --no-traces [--set agent.votes=0 | --set agent.vote_threshold=T]`,
#   paired with `mcqa eval compare` against no votes): 0.9: +0.066 [+0.042, +0.092] | -0.008 [-0.016, -0.002];
#   0.97 (the default before, picked on these shared splits): +0.027 [+0.014, +0.042] | -0.002 [-0.004, -0.000].
#   Every vote on an unseen label is for a wrong one, so unseen can only lose; `validation` (questions held
#   out at random, seen and unseen labels as they come) is the split a new test file resembles.
# - map label_space `question` (rank only the labels the label store's split gave the same question with the
#   same correctness, as the competition's medal solutions did; a rule, nothing tuned), reported once on the
#   whole `validation` (`mcqa eval run --dataset map --split validation --batch-size 256 --no-traces --set
#   agent.label_space=all|question`, paired with `mcqa eval compare`): MAP@3 0.9045 -> 0.9055, +0.0010
#   [+0.0005, +0.0015]; the gold label is in the allowed set for 5,869 of 5,871 responses; no extra cost.
# Answer permutations by dataset, with the 1.5B model (`mcqa eval run ... --set agent.verify=false --set
# agent.permutations=K`, paired with `mcqa eval compare`; docs/results.md, "Answer quality"):
# - codemmlu_fpt `validation`, first 150: K 1: 0.360, K 4: 0.507 (+0.147 [+0.060, +0.233]; 33 fixed, 11 broken;
#   position-bias RStd 20.2 -> 8.8).
# - arc_challenge `test`, first 100: K 1: 0.660, K 4: 0.610 (-0.050 [-0.130, +0.030]), at 3x the time.
# - mmlu_stem `test`, 200 items drawn by `--sample 200` (every subject): K 1: 0.400, K 4: 0.480 (+0.080 [+0.005, +0.155];
#   RStd 19.1 -> 3.1).
# On 100 CodeMMLU items outside the shared data the 4 shifts scored 0.400 against zero-shot's 0.400 (+0.000
# [-0.090, +0.090]) at 2.9x the seconds: the first 150 of `validation` had flattered them, so CodeMMLU answers
# with the plain prompt. MMLU-STEM answers with it too: a default that costs more than zero-shot (the shifts:
# about 3x) must show a paired gain on a whole split, and 200 drawn items (an interval that barely leaves out
# zero, as CodeMMLU's first 150 did) are not that; `permutations: 4` stays an opt-in there. On ARC (RStd 5.0)
# they break more than they fix.
# Tools (docs/tools.md), chosen on `fit` and reported on 300 items drawn across `validation` (`mcqa eval run
# --dataset codemmlu_fpt --split validation --sample 300 --set agent.permutations=1 --set agent.verify=false
# [--set "agent.tools=[execute]"]`, paired with `mcqa eval compare`):
# - codemmlu_fpt `execute`: 0.437 -> 0.467, +0.030 [+0.013, +0.050]; where it named a choice (18 of 300) 0.333 ->
#   0.833, +0.500 [+0.278, +0.722]; 9 fixed, 0 broken; verifier AUROC 0.917. On `fit` (no LLM,
#   bench/execute_coverage.py) it names a choice for 218 of 2,526 items, 88.5% of them right, so `adopt`.
#   With the examples check for completion items (on `fit`: one survivor for 65 of 104, 64 right) and
#   `scoring: blanks`, the default: 0.437 -> 0.587, +0.150 [+0.110, +0.193]; tool items (31) 0.258 -> 0.839;
#   AUROC 0.935; 1.02x zero-shot's seconds (bench/answer_modes.py --modes default).
# - aqua_rat `compute` (prompt and rule chosen on 80 items of `dev`), the whole `test` split: 0.270 -> 0.456,
#   +0.186 [+0.127, +0.240]; where it named a choice (64 of 204) 0.281 -> 0.875; 40 fixed, 2 broken; verifier
#   AUROC 0.912; about 5x zero-shot's seconds (a program of up to `program_tokens` is generated per item).
# - mathqa `compute`, 300 items drawn across `test` (`--sample 300`): 0.250 -> 0.420, +0.170 [+0.120, +0.220];
#   where it named a choice (102) 0.294 -> 0.784; 58 fixed, 8 broken; AUROC 0.832. About 5x zero-shot's
#   seconds, for a gain whose interval stays 12 points above zero on 300 items drawn across the split: the default.
# Scoring (`agent.scoring`), against letters at K 1: cloze on ARC's first 100 0.480 against 0.660 (-0.180
# [-0.310, -0.060]), on the MMLU-STEM sample 0.440 against 0.400 (+0.040 [-0.045, +0.125]); both 0.510 / 0.420.
# Letters stay the default except on CodeMMLU's items with a blank to fill (`blanks`): on 20 of its `fit`
# items of that kind (drawn by seed) cloze answered 16 right against letters' 5, and 14 against 4 once
# the line after the blank (the data leaves the right line there in 343 of 356 `fit` items) was removed.
DATASET_DEFAULTS = {
    "map": {
        "votes": 5,
        "vote_threshold": 0.8,
        "vote_weight": 10.0,
        "classifier": "auto",
        "classifier_weight": 3.0,
        "ngram": "auto",
        "ngram_weight": 10.0,
        "label_space": "question",
    },
    "eedi": {
        "votes": 10,
        "vote_threshold": 0.9,
        "vote_weight": 1.0,
        "classifier": "none",
        "sibling_contrast": 0.4,
        "hubness": 0.75,
    },
    "codemmlu_fpt": {"permutations": 1, "tools": ["execute"], "scoring": "blanks"},
    "aqua_rat": {"tools": ["compute"]},
    "mathqa": {"tools": ["compute"]},
}
OTHER_DEFAULTS = {
    "tools": [],
    "votes": 0,
    "vote_threshold": 0.9,
    "vote_weight": 1.0,
    "classifier": "none",
    "classifier_weight": 3.0,
    "ngram": "none",
    "ngram_weight": 10.0,
    "permutations": 1,
    "scoring": "letter",
    "sibling_contrast": 0.0,
    "hubness": 0.0,
    "label_space": "all",
}


def default_tasks(dataset: str | None) -> list[Task]:
    """Misconceptions for datasets with a catalogue (their right answer is given), answers otherwise."""
    return ["misconceptions"] if dataset in ("eedi", "map") else ["answer"]


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[Task] | None = Field(
        None,
        description="What to do: answer, misconceptions, or both. Default: misconceptions for datasets "
        "with a misconception catalogue (eedi, map), answer for the rest.",
    )
    few_shot: int = Field(
        0, ge=0, description="Solved examples retrieved as few-shot turns (0: off), from the train split or `examples`."
    )
    few_shot_order: Literal["nearest_first", "nearest_last"] = Field(
        "nearest_first",
        description="The order of the few-shot turns: the most similar example first, or last "
        "(right before the question, where a small model attends most).",
    )
    examples_split: str = Field("train", description="The split of the same dataset the few-shot examples come from.")
    examples: str | None = Field(
        None,
        description="Where few-shot examples come from instead (None: `examples_split` of the dataset solved): "
        "`DATASET:SPLIT`, any dataset of `mcqa data list` and any of its splits or `fit` (e.g. "
        "`codemmlu_fpt:train` while solving arc_challenge, which has no train split), or a path to "
        "a file of solved items (CSV, JSONL, JSON, Parquet; see `examples_columns`). Only items "
        "with an answer are used, and an example with the same question and choices as the item "
        "being solved is never shown (mcqa.rag.store.same_question).",
    )
    examples_columns: list[str] | None = Field(
        None,
        description="For a file in `examples`: which column holds what, as the CLI's --column pairs, e.g. "
        "['question=Question', 'choices=A,B,C,D', 'answer=Answer'] (answer: letter, 0-based index "
        "or text). None: columns named question, choices (a list) and answer.",
    )
    permutations: int | None = Field(
        None,
        ge=1,
        description="Score each item under this many cyclic shifts of its choices and average each "
        "choice's probability (1: as shown, the plain prompt; 4: every choice of a 4-choice "
        "item at every position once, so the model's letter preference cancels). Costs up to "
        "that many prompts an item; they share the question's tokens as a prefix. None: by "
        "dataset (1 everywhere: the shifts cost up to K times zero-shot and no split shows them paying for "
        "it; see DATASET_DEFAULTS).",
    )
    scoring: Literal["letter", "cloze", "both", "blanks"] | None = Field(
        None,
        description="How a choice is scored: `letter` (the probability of its letter after the lettered "
        "question), `cloze` (the log-likelihood of the choice's own text as the answer to the bare "
        "question, per byte: lm-evaluation-harness's acc_norm; position bias cannot arise), "
        "`both` (the mean of the two distributions) or `blanks` (cloze for items whose question has a "
        "blank to fill, `_____`, and letters for the rest: a code model judges which line fits a "
        "program far better than which letter is right; an item with an empty choice is scored by letters). "
        "Cloze costs one prompt an item plus every "
        "choice's tokens. None: by dataset (see DATASET_DEFAULTS).",
    )
    pride: int = Field(
        0,
        ge=0,
        description="PriDe: score the first N items of a run under every cyclic shift, estimate the model's "
        "letter prior from them, and divide it out of every later item's probabilities (0: off).",
    )
    tools: list[Literal["execute", "compute"]] | None = Field(
        None,
        description="Tools that check the answer by running something, in the sandbox (mcqa.sandbox): "
        "`execute` compiles and runs a code item's snippet and matches its output (or compile "
        "error) to a choice; `compute` has the LLM write a Python `solution()` for a math item "
        "(most choices numbers) and takes the choice closest to its result. An item where a "
        "tool named a choice (or ruled some out) is verified by agreement, not P(TRUE); a disagreement reconsiders "
        "by `tool_rule`. Code from the data runs only when this is set. None: by dataset "
        "(codemmlu_fpt [execute], aqua_rat and mathqa [compute], others []; DATASET_DEFAULTS).",
    )
    tool_rule: Literal["adopt", "fuse"] = Field(
        "adopt",
        description="When a tool's choice disagrees with the answer: `adopt` it, or `fuse` it with the "
        "answer's probabilities (p + tool_weight * one-hot, renormalised; the argmax wins).",
    )
    tool_weight: float = Field(1.0, ge=0, description="`fuse`: the weight of the tool's one-hot vote.")
    program_tokens: int = Field(320, ge=16, description="`compute`: token budget of the program the LLM writes.")
    tool_cpu_seconds: int = Field(2, ge=1, description="Sandbox CPU seconds per run (compiling gets 5x).")
    tool_wall_seconds: float = Field(5.0, gt=0, description="Sandbox wall-clock seconds per run (compiling gets 5x).")
    tool_memory_mb: int = Field(512, ge=64, description="Sandbox address space per run, MB.")
    tool_workers: int = Field(2, ge=1, description="Sandboxed programs run at once.")
    verify: bool = Field(
        False,
        description="Ask the model whether its answer is right (P(TRUE)) where no tool "
        "named a choice. Off by default: with the 1.5B default model its "
        "AUROC is 0.53 (chance), and it costs a prompt an item.",
    )
    reconsider_rounds: int = Field(
        0,
        ge=0,
        description="At most this many re-answers after a failed verification. Off by default: with the "
        "1.5B default model it broke more right answers than it fixed (docs/results.md).",
    )
    reconsider_below: float = Field(0.5, ge=0, le=1, description="A verification fails when P(TRUE) is below this.")
    reconsider_margin: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Gate: only reconsider when the answer's probability margin over the runner-up "
        "is below this (self-correction can turn right answers wrong).",
    )
    think: bool = Field(
        False, description="Have the LLM explain each wrong answer first and add that to the retrieval query."
    )
    think_tokens: int = Field(48, ge=8, description="Token budget of one explanation.")
    embedder: str = Field(
        "minilm-l6", description="Embedder for examples and misconceptions: registry name or a local folder."
    )
    embedders: list[str] | None = Field(
        None,
        description="An ensemble for misconception retrieval: more embedders (registry names or folders, e.g. "
        "['mpnet-base'] or a fine-tuned folder) whose own cached misconception indexes are searched "
        "too, `candidates` each; their lists are fused (`fusion`) before votes and reranking. "
        "`embedder` stays the first member and alone serves few-shot examples, label votes and the "
        "classifier. None: `embedder` alone.",
    )
    fusion: Literal["zsum", "rrf"] = Field(
        "zsum",
        description="How an ensemble's lists are fused (mcqa.rag.retrieval.fuse_lists): `zsum`, the weighted sum "
        "of each embedder's z-scored cosines over the union of candidates (each candidate scored "
        "by every embedder); `rrf`, reciprocal rank fusion, the weighted sum of 1 / (60 + rank). "
        "The fused scores are mapped onto `embedder`'s cosines, so vote_weight keeps its meaning.",
    )
    fusion_weights: list[float] | None = Field(
        None, description="One weight per ensemble member, `embedder` first then `embedders` in order. None: all 1."
    )
    query_format: str | None = Field(
        None, description="How a wrong answer becomes a retrieval query (mcqa.rag.queries); default: the measured best."
    )
    candidates: int = Field(50, ge=1, description="Misconception candidates retrieved per wrong answer.")
    sibling_contrast: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Retrieve with each wrong answer's query minus this much of the mean of the "
        "other wrong answers' of the same question (mcqa.rag.retrieval.contrast_siblings): "
        "what the distractors share is the question's topic, not this one's misconception. "
        "Label votes keep the plain query. None: by dataset (eedi 0.4, others 0: a MAP "
        "response has no siblings).",
    )
    hubness: float | None = Field(
        None,
        ge=0,
        description="Subtract this times each misconception's hub score (the mean of its `hubness_k` "
        "highest cosines with a bank of queries: every wrong answer of the split being "
        "solved) from its cosines, so misconceptions near every query stop crowding the top "
        "(MisconceptionIndex.hub_scores). Off below `hubness_k` queries (one item, no split). "
        "None: by dataset (eedi 0.75, others 0).",
    )
    hubness_k: int = Field(50, ge=1, description="Bank neighbours behind a hub score.")
    votes: int | None = Field(
        None,
        ge=0,
        description="How many of the nearest labelled answers of the examples split vote for their label "
        "(MAP: responses to the same question with the same answer; mcqa.rag.store.LabelStore), "
        "added to the retrieval scores. None: by dataset (DATASET_DEFAULTS: map 5, eedi 10, "
        "others 0); 0: off.",
    )
    vote_threshold: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="A neighbour votes max(0, cosine - threshold) / (1 - threshold) "
        "(mcqa.rag.retrieval.vote). None: by dataset (map 0.8, eedi 0.9: lower "
        "thresholds push seen labels above unseen right ones).",
    )
    vote_weight: float | None = Field(
        None,
        ge=0,
        description="Fused score: retrieval cosine + vote_weight * votes. None: by dataset (map 10: "
        "its catalogue names say little; eedi 1).",
    )
    classifier: str | None = Field(
        None,
        description="A label classifier whose probabilities join the votes (needs votes > 0): `auto` (fitted on "
        "the label store at first use, cached), a folder from `mcqa train classifier`, or `none`. "
        "None: by dataset (map auto, others none).",
    )
    classifier_weight: float | None = Field(
        None, ge=0, description="Votes + classifier_weight * P(label). None: by dataset (3 for all)."
    )
    seqclass: str | None = Field(
        None,
        description="A fine-tuned MAP sequence classifier (the `model` folder of `mcqa train seqclass`) whose "
        "probabilities join the votes and the classifier (needs votes > 0; read with numpy where torch is "
        "not installed). None: none.",
    )
    seqclass_weight: float = Field(3.0, ge=0, description="Votes + seqclass_weight * P(label) of `seqclass`.")
    ngram: str | None = Field(
        None,
        description="A MAP n-gram classifier (word and character TF-IDF, a logistic regression per answer: "
        "mcqa.finetune.ngram) whose probabilities join the votes (needs votes > 0): `auto` (fitted on the label "
        "store at first use, cached), a folder holding a fitted one (a Kaggle bundle's), or `none`. None: by "
        "dataset (map auto, others none).",
    )
    ngram_weight: float | None = Field(
        None, ge=0, description="Votes + ngram_weight * P(label) of `ngram`. None: by dataset (10)."
    )
    label_space: Literal["all", "question"] | None = Field(
        None,
        description="Which labels a MAP response is ranked among: `all` (whatever the catalogue, votes and "
        "classifier rank) or `question` (only the labels the label store's split, the examples split, `fit` "
        "when solving `validation`, gave other responses to the same question whose answer was as right as "
        "this one's, as the MAP competition's medal solutions did; mcqa.rag.label_space). The others are "
        "dropped, save the best of them where fewer than 3 are left (MAP@3 scores three places). A question "
        "that split never saw, or never with this correctness, keeps every label. Needs votes > 0 (MAP's "
        "labels are ranked in the label votes); no effect on other datasets. None: by dataset (map "
        "`question`, others `all`).",
    )
    reranker: str = Field(
        "none",
        description="none | llm (a Yes/No prompt per candidate) | llm-list (one prompt per "
        "wrong answer, the candidates lettered as options) | path to a "
        "sentence-transformers CrossEncoder folder.",
    )
    rerank_top: int = Field(
        25,
        ge=1,
        description="How many of the retrieved candidates the reranker rescores "
        "(llm-list: at most 26, one letter each; 10 is its usual size).",
    )
    rerank_reverse: bool = Field(
        False,
        description="llm-list: also score the list reversed and average the two, so "
        "a candidate's place in the list does not decide its score.",
    )
    rerank_weight: float | None = Field(
        None,
        ge=0,
        description="None: order the rescored head by the reranker alone. A number w: by z(retrieval) + "
        "w * z(reranker) over the head (mcqa.rag.retrieval.fuse_rerank), for a reranker "
        "that should refine retrieval rather than replace it.",
    )
    top_k: int = Field(25, ge=1, description="Misconceptions kept per wrong answer (MAP@25).")
    batch_size: int = Field(
        8, ge=1, description="Items per graph run: every node makes one backend call for the batch."
    )
    prompts: Prompts = Field(default_factory=Prompts)

    @model_validator(mode="after")
    def _ensemble_weights(self) -> AgentConfig:
        """One weight per member, none negative, not all 0 (checked when the config is read, not mid-run)."""
        weights, members = self.fusion_weights, 1 + len(self.embedders or [])
        if weights is not None and (len(weights) != members or min(weights) < 0 or not any(weights)):
            raise ValueError(
                f"fusion_weights needs {members} weights >= 0, not all 0 (embedder, then each of "
                f"embedders), got {weights}"
            )
        return self

    @property
    def sandbox_limits(self):
        from mcqa.sandbox import Limits

        return Limits(
            cpu_seconds=self.tool_cpu_seconds, wall_seconds=self.tool_wall_seconds, memory_mb=self.tool_memory_mb
        )

    def for_dataset(self, dataset: str | None) -> AgentConfig:
        """A copy with every by-dataset default filled in (tasks, tools, votes, vote_threshold, vote_weight,
        classifier, classifier_weight, ngram, ngram_weight, permutations, scoring, sibling_contrast, hubness,
        label_space), as a run uses it: what a run folder stores, so a default that changes between versions
        shows as a difference on resume."""
        defaults = {**OTHER_DEFAULTS, **DATASET_DEFAULTS.get(dataset or "", {}), "tasks": default_tasks(dataset)}
        return self.model_copy(update={key: value for key, value in defaults.items() if getattr(self, key) is None})

    @property
    def uses_classifier(self) -> bool:
        return bool(self.votes) and self.classifier not in (None, "none")

    @property
    def uses_seqclass(self) -> bool:
        return bool(self.votes) and self.seqclass not in (None, "none")

    @property
    def uses_ngram(self) -> bool:
        return bool(self.votes) and self.ngram not in (None, "none")
