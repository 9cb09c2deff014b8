"""The agent: one LangGraph graph for one item or thousands.

    retrieve_examples -> answer -> execute | compute -> verify -(failed and gated)-> reconsider -> verify
    -> think -> propose_misconceptions -> rerank -> finalize

Every node takes the whole batch in the state and makes one backend call for the items that need
it (one call per distinct set of letters). Which nodes exist is decided by the config when the
graph is built, so an answer-only benchmark never loads an embedder and a misconception-only task
(Eedi, where the right answer is given) never asks the LLM for a letter.
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import groupby, pairwise

import numpy as np
from langgraph.graph import END, START, StateGraph

from mcqa.agent.config import AgentConfig, default_tasks  # noqa: F401 (default_tasks: re-exported)
from mcqa.agent.debias import AnswerDebias
from mcqa.agent.prompts import (
    LIST_LETTERS,
    VERDICTS,
    YES_NO,
    base_chat,
    cloze_chat,
    reconsider_chat,
    rerank_chat,
    rerank_list_chat,
    think_chat,
    verify_chat,
)
from mcqa.agent.resources import Resources
from mcqa.agent.state import AgentState, examples_of, items_of
from mcqa.eval.bias import permute_item
from mcqa.llm.base import normalise_logprobs
from mcqa.rag.queries import wrong_letters
from mcqa.types import Item, Prediction

RESOURCES = (
    "llm",
    "embedder",
    "examples",
    "misconceptions",
    "extra_misconceptions",
    "hub_penalties",
    "labels",
    "classifier",
    "seqclass",
    "ngram",
    "cross_encoder",
)
LLM_RERANKERS = ("llm", "llm-list")  # the other rerankers are CrossEncoder folders
NODES = (
    "retrieve_examples",
    "answer",
    "execute",
    "compute",
    "verify",
    "reconsider",
    "think",
    "propose_misconceptions",
    "rerank",
    "finalize",
)


def _score_grouped(llm, requests: list[tuple[object, list, list[str]]]) -> dict[object, np.ndarray]:
    """Score (key, chat, options) requests with one call per distinct option list; key -> log-probs."""
    out = {}
    ordered = sorted(requests, key=lambda r: tuple(r[2]))
    for options, group in groupby(ordered, key=lambda r: tuple(r[2])):
        group = list(group)
        scores = llm.score_options([chat for _, chat, _ in group], list(options))
        for (key, _, _), row in zip(group, scores, strict=True):
            out[key] = row
    return out


def cloze_probs(choices: list[str], loglikelihoods: np.ndarray) -> np.ndarray:
    """One probability per choice from the raw log-likelihoods of the choice texts.

    The argmax is lm-evaluation-harness's acc_norm (log-likelihood per byte, so a long choice is not
    punished for its length); the spread is that of a choice of the mean length (per-byte scores
    times the mean byte count), so the distribution is as sharp as a sequence probability and can be
    averaged with the letter's."""
    lengths = np.array([max(1, len(c.encode("utf-8"))) for c in choices], dtype=np.float64)
    scaled = np.asarray(loglikelihoods, dtype=np.float64) / lengths * lengths.mean()
    return np.exp(normalise_logprobs(scaled))


BLANK = re.compile(r"_{5,}")  # a blank to fill in the question: "_______________" in a program


def has_blank(item: Item) -> bool:
    """The question holds a blank its choices fill (`scoring: blanks` scores those by cloze)."""
    return bool(BLANK.search(item.question))


def _cloze_scored(item: Item, scoring: str) -> bool:
    """Whether `scoring` scores this item's choice texts. A choice with no text (the blank is left empty:
    "nothing is missing") has no tokens to score, so such an item is scored by its letters."""
    wanted = scoring in ("cloze", "both") or (scoring == "blanks" and has_blank(item))
    return wanted and all(c.strip() for c in item.choices)


def _rejects(record: dict, letter: str) -> bool:
    """A tool record speaks against `letter`: it named another letter, or ruled this one out."""
    named = record.get("letter")
    return (named is not None and named != letter) or letter in (record.get("ruled_out") or [])


def _distribution(letters: list[str], logprobs: np.ndarray, all_letters: list[str]) -> dict[str, float]:
    probs = dict(zip(letters, np.exp(logprobs), strict=True))
    return {x: round(float(probs.get(x, 0.0)), 6) for x in all_letters}


class Agent:
    """Builds the graph for a config and holds the node functions (closures over the resources)."""

    def __init__(self, config: AgentConfig, resources: Resources, tasks: list[str], record_prompts: bool = False):
        self.config, self.resources, self.tasks, self.record_prompts = config, resources, tasks, record_prompts
        self.debias = AnswerDebias(config.permutations or 1, config.pride)  # holds the run's PriDe prior
        # A list to collect each voted answer's (item id, letter, LabelEvidence) in, or None: how
        # `mcqa train map-fusion` scores many weightings of one solved split with the agent's own ranking.
        self.evidence: list | None = None

    # -- nodes ---------------------------------------------------------------------------------
    def retrieve_examples(self, state: AgentState) -> AgentState:
        items = items_of(state)
        found = self.resources.examples.search(items, self.config.few_shot)  # nearest first
        if self.config.few_shot_order == "nearest_last":  # the closest example right before the question
            found = [exs[::-1] for exs in found]
        return {"examples": {it.id: [ex.model_dump() for ex in exs] for it, exs in zip(items, found, strict=True)}}

    def answer(self, state: AgentState) -> AgentState:
        """The letter from the answer chat's option probabilities; with `permutations` or `pride` also
        from shifted presentations of the choices (mcqa.agent.debias). A debiased answer that differs
        from the plain one is recorded as a flip ("permute: B->C" or "pride: B->C")."""
        items = items_of(state)
        prompts, scoring = self.config.prompts, self.config.scoring or "letter"
        by_cloze = {it.id: _cloze_scored(it, scoring) for it in items}
        cloze_items = [it for it in items if by_cloze[it.id]]
        letter_items = [it for it in items if scoring != "cloze" and not (scoring == "blanks" and by_cloze[it.id])]
        letter_items += [it for it in items if not by_cloze[it.id] and scoring == "cloze"]  # an empty choice
        chats = {it.id: base_chat(it, examples_of(state, it.id), prompts) for it in letter_items}
        orders = {it.id: self.debias.orders(len(it.choices)) for it in letter_items}  # the item as shown first
        requests, shown = [], {}
        for it in letter_items:  # an item's shifts right after it: they share its question as a token prefix
            examples = examples_of(state, it.id)
            for k, order in enumerate(orders[it.id]):
                chat = chats[it.id] if k == 0 else base_chat(permute_item(it, order), examples, prompts)
                requests.append(((it.id, k), chat, it.letters))
                shown[(it.id, k)] = chat
        scores = _score_grouped(self.resources.llm, requests)
        cloze = {}
        if cloze_items:
            for it in cloze_items:
                chat = cloze_chat(it, examples_of(state, it.id), prompts)
                cloze[it.id] = cloze_probs(
                    it.choices, self.resources.llm.score_options([chat], it.choices, normalise=False)[0]
                )
                shown[(it.id, "cloze")] = chat
        answers, first, flips = {}, {}, {}
        for it in items:
            step = None
            if it.id in orders:
                rows = [np.exp(scores[(it.id, k)]) for k in range(len(orders[it.id]))]
                plain = it.letters[int(np.argmax(rows[0]))]
                combined, step = self.debias.combine(orders[it.id], rows)
                if it.id in cloze:  # both: the letter's distribution and the choice texts' together
                    combined, step = (combined + cloze[it.id]) / 2, "cloze"
            else:
                combined = cloze[it.id]
                plain = it.letters[int(np.argmax(combined))]
            probs = _distribution(it.letters, np.log(np.clip(combined, 1e-300, None)), it.letters)
            letter = max(probs, key=probs.get)
            answers[it.id] = {"letter": letter, "probs": probs}
            first[it.id] = probs
            if step and letter != plain:
                flips[it.id] = [f"{step}: {plain}->{letter}"]
        update: AgentState = {
            "answers": answers,
            "first_probs": first,
            "pending": [it.id for it in items],
            "rejected": {},
            "flips": flips,
        }
        return self._with_prompts(update, "answer", {f"{i}/{k}" if k else i: c for (i, k), c in shown.items()})

    def execute(self, state: AgentState) -> AgentState:
        """The code tool: each item's snippet made a program and run in the sandbox (mcqa.agent.tools)."""
        from mcqa.agent.tools import execute_records

        cfg = self.config
        records = execute_records(items_of(state), cfg.sandbox_limits, cfg.tool_workers)
        return {"tools": {**state.get("tools", {}), **{i: r.as_dict() for i, r in records.items()}}}

    def compute(self, state: AgentState) -> AgentState:
        """The math tool: one generate call writes a program per math item not settled by `execute`."""
        from mcqa.agent.tools import compute_records

        cfg, done = self.config, state.get("tools", {})
        items = [it for it in items_of(state) if (done.get(it.id) or {}).get("letter") is None]
        records, chats = compute_records(
            items, self.resources.llm, cfg.prompts, cfg.program_tokens, cfg.sandbox_limits, cfg.tool_workers
        )
        merged = {**done, **{i: r.as_dict() for i, r in records.items() if i not in done or r.letter is not None}}
        return self._with_prompts({"tools": merged}, "compute", chats)

    def verify(self, state: AgentState) -> AgentState:
        """An item whose tool named a choice is verified by agreement (1.0 / 0.0), without the model; the
        rest by P(TRUE) where `verify` is on. The first verdict of a tool is kept in its record (`checked`,
        `agrees`): what the verifier's AUROC is computed from."""
        items = {it.id: it for it in items_of(state)}
        answers, tools = state["answers"], {k: dict(v) for k, v in state.get("tools", {}).items()}
        verification = dict(state.get("verification", {}))
        asked = {}
        for i in state.get("pending", []):
            record, letter = tools.get(i), answers[i]["letter"]
            if record and (record.get("letter") or record.get("ruled_out")):
                agrees = not _rejects(record, letter)
                verification[i] = float(agrees)
                if record.get("checked") is None:
                    record.update(checked=letter, agrees=agrees)
            elif self.config.verify:
                asked[i] = verify_chat(items[i], examples_of(state, i), letter, self.config.prompts)
        scores = _score_grouped(self.resources.llm, [(i, chat, VERDICTS) for i, chat in asked.items()])
        verification.update({i: round(float(np.exp(row[0])), 6) for i, row in scores.items()})
        update: AgentState = {"verification": verification, "pending": []}
        if tools:
            update["tools"] = tools
        return self._with_prompts(update, "verify", asked)

    def _tool_record(self, state: AgentState, item_id: str) -> dict | None:
        """The item's tool record when its result says something about the letters (named one, or
        ruled some out), else None."""
        record = state.get("tools", {}).get(item_id) or {}
        return record if record.get("letter") or record.get("ruled_out") else None

    def needs_reconsider(self, state: AgentState) -> list[str]:
        """Items whose answer failed verification, where the gate lets the agent answer again: a tool
        that disagrees (once), or a P(TRUE) below `reconsider_below` within the margin gate."""
        cfg, out = self.config, []
        for item in items_of(state):
            answer = state["answers"][item.id]
            rejected = state.get("rejected", {}).get(item.id, [])
            tool = self._tool_record(state, item.id)
            if tool:
                if _rejects(tool, answer["letter"]) and not rejected:
                    out.append(item.id)
                continue
            top = sorted(answer["probs"].values(), reverse=True)
            margin = top[0] - (top[1] if len(top) > 1 else 0.0)
            if (
                cfg.verify
                and state.get("verification", {}).get(item.id, 1.0) < cfg.reconsider_below
                and margin < cfg.reconsider_margin
                and len(rejected) < cfg.reconsider_rounds
                and len(rejected) + 1 < len(item.letters)
            ):
                out.append(item.id)
        return out

    def reconsider(self, state: AgentState) -> AgentState:
        """A tool's disagreement is settled by `tool_rule` without the model (the flip is named after the
        tool: `execute: B->C`); a failed P(TRUE) re-asks the model without the rejected letters."""
        items = {it.id: it for it in items_of(state)}
        answers = dict(state["answers"])
        rejected = {k: list(v) for k, v in state.get("rejected", {}).items()}
        flips = {k: list(v) for k, v in state.get("flips", {}).items()}
        requests, chats, settled = [], {}, []
        for i in self.needs_reconsider(state):
            old = answers[i]["letter"]
            rejected.setdefault(i, []).append(old)
            tool = self._tool_record(state, i)
            if tool:
                new = self._settle(answers[i]["probs"], tool)
                if new != old:
                    flips.setdefault(i, []).append(f"{state['tools'][i]['tool']}: {old}->{new}")
                    answers[i] = {"letter": new, "probs": answers[i]["probs"]}
                settled.append(i)
                continue
            remaining = [x for x in items[i].letters if x not in rejected[i]]
            chats[i] = reconsider_chat(items[i], examples_of(state, i), rejected[i], self.config.prompts)
            requests.append((i, chats[i], remaining))
        scores = _score_grouped(self.resources.llm, requests)
        for i, _, remaining in requests:
            probs = _distribution(remaining, scores[i], items[i].letters)
            new = max(probs, key=probs.get)
            flips.setdefault(i, []).append(f"{answers[i]['letter']}->{new}")
            answers[i] = {"letter": new, "probs": probs}
        update: AgentState = {"answers": answers, "rejected": rejected, "flips": flips, "pending": [*settled, *chats]}
        return self._with_prompts(update, "reconsider", chats)

    def _settle(self, probs: dict[str, float], tool: dict) -> str:
        """The letter after a tool disagreed: the tool's (`adopt`), or the argmax of the answer's
        probabilities plus `tool_weight` on the tool's letter (`fuse`). A tool that only ruled letters
        out leaves the model's most probable letter among the others."""
        ruled_out = set(tool.get("ruled_out") or [])
        probs = {x: p for x, p in probs.items() if x not in ruled_out}
        letter = tool.get("letter")
        if letter is None:
            return max(probs, key=probs.get)
        if self.config.tool_rule == "adopt":
            return letter
        fused = {x: p + (self.config.tool_weight if x == letter else 0.0) for x, p in probs.items()}
        return max(fused, key=fused.get)

    def think(self, state: AgentState) -> AgentState:
        answers = state.get("answers", {})
        keys, chats = [], []
        for item in items_of(state):
            for letter in wrong_letters(item, answers.get(item.id, {}).get("letter")):
                keys.append((item.id, letter))
                chats.append(think_chat(item, letter, self.config.prompts))
        texts = self.resources.llm.generate(chats, max_tokens=self.config.think_tokens, stop=["\n\n"]) if chats else []
        explanations: dict[str, dict[str, str]] = defaultdict(dict)
        for (item_id, letter), text in zip(keys, texts, strict=True):
            explanations[item_id][letter] = text.strip()
        return self._with_prompts(
            {"explanations": dict(explanations)},
            "think",
            {f"{i}/{x}": c for (i, x), c in zip(keys, chats, strict=True)},
        )

    def propose_misconceptions(self, state: AgentState) -> AgentState:
        from mcqa.rag import DEFAULT_QUERY_FORMAT, QUERY_FORMATS
        from mcqa.rag.retrieval import contrast_siblings

        build_query = QUERY_FORMATS[self.config.query_format or DEFAULT_QUERY_FORMAT]
        answers, explanations = state.get("answers", {}), state.get("explanations", {})
        keys, queries = [], []
        for item in items_of(state):
            for letter in wrong_letters(item, answers.get(item.id, {}).get("letter")):
                extra = explanations.get(item.id, {}).get(letter)
                keys.append((item.id, letter))
                queries.append(build_query(item, letter) + (f" ### {extra}" if extra else ""))
        index = self.resources.misconceptions
        # With hubness the split's queries are encoded already, as its bank (Resources.query_bank): look them up.
        texts, banks = self.resources.query_bank if self.config.hubness and queries else ([], [])
        known = [dict(zip(texts, bank, strict=True)) for bank in banks] or [{}] * (1 + len(self.config.embedders or []))
        vectors = index.embedder.encode_reusing(queries, known[0]) if queries else None
        groups = [item_id for item_id, _ in keys]
        contrast = self.config.sibling_contrast or 0.0
        penalties = self.resources.hub_penalties if self.config.hubness and queries else None
        if queries and self.config.embedders:  # an ensemble: every member retrieves, the lists are fused
            from mcqa.rag.retrieval import search_fused

            others = self.resources.extra_misconceptions
            members = [
                vectors,
                *(o.embedder.encode_reusing(queries, k) for o, k in zip(others, known[1:], strict=True)),
            ]
            found = search_fused(
                [index, *others],
                [contrast_siblings(v, groups, contrast) for v in members],
                self.config.candidates,
                self.config.fusion,
                self.config.fusion_weights,
                penalties,
            )
        else:
            found = (
                index.search_vectors(
                    contrast_siblings(vectors, groups, contrast),
                    self.config.candidates,
                    penalties[0] if penalties else None,
                )
                if queries
                else []
            )
        if self.config.votes and queries:
            found = self._with_votes(
                items_of(state), answers, keys, found, build_query, dict(zip(queries, vectors, strict=True))
            )
        candidates: dict[str, dict[str, list[list]]] = defaultdict(dict)
        for (item_id, letter), hits in zip(keys, found, strict=True):
            candidates[item_id][letter] = [[mid, round(float(score), 6)] for mid, score in hits]
        update: AgentState = {"candidates": dict(candidates)}
        if self.record_prompts:
            update["prompts"] = {
                **state.get("prompts", {}),
                "propose_misconceptions": dict(zip([f"{i}/{x}" for i, x in keys], queries, strict=True)),
            }
        return update

    def _with_votes(
        self,
        items: list[Item],
        answers: dict,
        keys: list[tuple[str, str]],
        found: list[list[tuple[str, float]]],
        build_query,
        encoded: dict[str, np.ndarray],
    ) -> list[list[tuple[str, float]]]:
        """Retrieval hits fused with the votes of the nearest labelled answers (mcqa.rag.store.LabelStore),
        and with trained classifiers' probabilities where configured: the head on frozen vectors
        (mcqa.finetune.classifier), the fine-tuned sequence classifier (mcqa.finetune.seqclass) and the
        n-gram classifier (mcqa.finetune.ngram), all summed into one score by
        mcqa.rag.retrieval.LabelEvidence.rank.

        A MAP response is ranked in MAP's own labels: catalogue ids become `Misconception:<id>`, votes
        add `Correct:NA` and `Neither:NA`, and the True_/False_ half comes from whether the student's
        answer is the right one (the item's gold, else the agent's answer), never from a guess. Without
        either, the response keeps its plain retrieval hits. With `label_space: question` its list keeps
        only the labels the store gave the same question with the same correctness
        (mcqa.rag.label_space.restrict_labels), before the True_/False_ half is added.
        """
        from mcqa.rag.queries import evidence_text
        from mcqa.rag.retrieval import LabelEvidence
        from mcqa.rag.store import answer_group

        cfg = self.config
        by_id = {it.id: it for it in items}
        pairs = [(by_id[i], letter) for i, letter in keys]
        store, groups = self.resources.labels, [answer_group(it, x) for it, x in pairs]
        texts = [evidence_text(it, x, build_query) for it, x in pairs]
        # An Eedi answer's evidence text is its retrieval query, already in `encoded` (the store is built
        # with the same embedder, Resources.labels): only MAP's explanations are encoded here.
        vectors = store.embedder.encode_reusing(texts, encoded)
        neighbours = store.search_vectors(vectors, groups, [it.id for it, _ in pairs], cfg.votes)
        rights = [it.answer or answers.get(it.id, {}).get("letter") for it, _ in pairs]
        head = self.resources.classifier if cfg.uses_classifier else None
        head_probs = head.predict(vectors, groups) if head else None
        seqclass = self.resources.seqclass if cfg.uses_seqclass else None
        # a response whose right answer is unknown keeps its plain hits: no input for the classifier either
        scored = [n for n, ((it, _), right) in enumerate(zip(pairs, rights, strict=True)) if it.chosen is None or right]
        seq_rows = (
            dict(zip(scored, seqclass.predict([pairs[n][0] for n in scored], [rights[n] for n in scored]), strict=True))
            if seqclass
            else {}
        )
        ngram = self.resources.ngram if cfg.uses_ngram else None
        ngram_probs = ngram.predict(texts, groups) if ngram else None
        fused = []
        for n, ((item, letter), hits, near, right) in enumerate(zip(pairs, found, neighbours, rights, strict=True)):
            if item.chosen is not None and right is None:
                fused.append(hits)
                continue
            evidence = LabelEvidence(
                hits=hits if item.chosen is None else [(f"Misconception:{m}", s) for m, s in hits],
                neighbours=near,
                head=dict(zip(head.labels, map(float, head_probs[n]), strict=True)) if head else {},
                seqclass=dict(zip(seqclass.labels, map(float, seq_rows[n]), strict=True)) if seqclass else {},
                ngram=dict(zip(ngram.labels, map(float, ngram_probs[n]), strict=True)) if ngram else {},
                allowed=store.label_space.allowed(item, right)
                if item.chosen is not None and cfg.label_space == "question"
                else None,
                right=None if item.chosen is None else right == item.chosen,
            )
            if self.evidence is not None:
                self.evidence.append((item.id, letter, evidence))
            fused.append(
                evidence.rank(
                    cfg.votes,
                    cfg.vote_threshold,
                    cfg.vote_weight,
                    cfg.classifier_weight,
                    cfg.seqclass_weight if seqclass else 0.0,
                    cfg.ngram_weight if ngram else 0.0,
                )
            )
        return fused

    def rerank(self, state: AgentState) -> AgentState:
        """Rescore the top `rerank_top` candidates; the rest keep their retrieval order behind them."""
        items = {it.id: it for it in items_of(state)}
        index, top = self.resources.misconceptions, self.config.rerank_top
        if self.config.reranker == "llm-list":  # one letter a candidate: a longer head keeps retrieval order
            top = min(top, len(LIST_LETTERS))
        pairs = [
            (i, letter, mid)
            for i, by_letter in state["candidates"].items()
            for letter, hits in by_letter.items()
            for mid, _ in hits[:top]
        ]
        if self.config.reranker == "llm":
            requests = [
                ((i, x, m), rerank_chat(items[i], x, index.name_of(m), self.config.prompts), YES_NO)
                for i, x, m in pairs
            ]
            scores = {k: float(np.exp(v[0])) for k, v in _score_grouped(self.resources.llm, requests).items()}
        elif self.config.reranker == "llm-list":
            scores = self._list_scores(state, items, top)
        else:  # a CrossEncoder folder
            from mcqa.rag import DEFAULT_QUERY_FORMAT, QUERY_FORMATS

            build_query = QUERY_FORMATS[self.config.query_format or DEFAULT_QUERY_FORMAT]
            texts = [(build_query(items[i], x), index.name_of(m)) for i, x, m in pairs]
            values = self.resources.cross_encoder.predict(texts, batch_size=32) if texts else []
            scores = {key: float(v) for key, v in zip(pairs, values, strict=True)}
        from mcqa.rag.retrieval import fuse_rerank

        ranked: dict[str, dict[str, list[list]]] = defaultdict(dict)
        for i, by_letter in state["candidates"].items():
            for letter, hits in by_letter.items():
                fused = fuse_rerank(
                    [s for _, s in hits[:top]],
                    [scores[(i, letter, m)] for m, _ in hits[:top]],
                    self.config.rerank_weight,
                )
                head = sorted(zip(fused, (m for m, _ in hits[:top]), strict=True), key=lambda h: -h[0])
                ranked[i][letter] = [[m, round(s, 6)] for s, m in head] + hits[top:]
        return {"ranked": dict(ranked)}

    def _list_scores(self, state: AgentState, items: dict[str, Item], top: int) -> dict[tuple, float]:
        """Listwise LLM reranking: per wrong answer, one prompt with its top candidates lettered as
        options; each candidate's score is its letter's probability (one forward pass, not one prompt
        per candidate). With `rerank_reverse` the list is also shown reversed and the two averaged,
        which cancels the model's preference for early letters (as Eedi's 2nd place did)."""
        index, prompts = self.resources.misconceptions, self.config.prompts
        requests, lists = [], {}
        for i, by_letter in state["candidates"].items():
            for x, hits in by_letter.items():
                mids = [m for m, _ in hits[:top]]
                lists[(i, x)] = mids
                orders = [mids, mids[::-1]] if self.config.rerank_reverse and len(mids) > 1 else [mids]
                for k, shown in enumerate(orders):
                    chat = rerank_list_chat(items[i], x, [index.name_of(m) for m in shown], prompts)
                    requests.append(((i, x, k), chat, LIST_LETTERS[: len(shown)]))
        scored = _score_grouped(self.resources.llm, requests) if requests else {}
        scores: dict[tuple, float] = {}
        for (i, x), mids in lists.items():
            probs = np.exp(scored[(i, x, 0)]) if mids else np.array([])
            if (i, x, 1) in scored:
                probs = (probs + np.exp(scored[(i, x, 1)])[::-1]) / 2
            scores.update({(i, x, m): float(p) for m, p in zip(mids, probs, strict=True)})
        return scores

    def finalize(self, state: AgentState) -> AgentState:
        answers, ranked = state.get("answers", {}), state.get("ranked") or state.get("candidates", {})
        predictions = []
        for item in items_of(state):
            letter = answers.get(item.id, {}).get("letter")
            hits = ranked.get(item.id, {})
            prediction = Prediction(
                item_id=item.id,
                answer=letter,
                option_probs=state.get("first_probs", {}).get(item.id, {}),
                correct=None if item.answer is None or "answer" not in self.tasks else letter == item.answer,
                verification=state.get("verification", {}).get(item.id),
                tool=state.get("tools", {}).get(item.id),
                flips=state.get("flips", {}).get(item.id, []),
                misconceptions={x: [m for m, _ in h[: self.config.top_k]] for x, h in hits.items()},
                misconception_scores={x: [s for _, s in h[: self.config.top_k]] for x, h in hits.items()},
            )
            predictions.append(prediction.model_dump())
        return {"predictions": predictions}

    def _with_prompts(self, update: AgentState, node: str, chats: dict) -> AgentState:
        if self.record_prompts:
            update["prompts"] = {node: chats}
        return update

    # -- wiring ------------------------------------------------------------------------------------
    def nodes(self) -> list[str]:
        """The nodes this config runs, in order."""
        cfg, answer, misc = self.config, "answer" in self.tasks, "misconceptions" in self.tasks
        tools = cfg.tools or []
        wanted = {
            "retrieve_examples": answer and cfg.few_shot > 0,
            "answer": answer,
            "execute": answer and "execute" in tools,
            "compute": answer and "compute" in tools,
            "verify": answer and (cfg.verify or bool(tools)),
            "reconsider": answer and ((cfg.verify and cfg.reconsider_rounds > 0) or bool(tools)),
            "think": misc and cfg.think,
            "propose_misconceptions": misc,
            "rerank": misc and cfg.reranker != "none",
            "finalize": True,
        }
        return [name for name in NODES if wanted[name]]

    def resources_used(self) -> set[str]:
        """The resources the nodes of this config call, named as the attributes of
        mcqa.agent.resources.Resources (RESOURCES). The one place that decides it: loaders, bundles
        (mcqa.kaggle.bundle), runners (mcqa.kaggle.run, mcqa.eval.cli) ask here instead of deciding again."""
        cfg, nodes = self.config, set(self.nodes())
        used = set()
        if nodes & {"answer", "compute", "verify", "reconsider", "think"} or (
            "rerank" in nodes and cfg.reranker in LLM_RERANKERS
        ):
            used.add("llm")
        if "retrieve_examples" in nodes:
            used |= {"examples", "embedder"}
        if "propose_misconceptions" in nodes:
            used |= {"misconceptions", "embedder"}
            if cfg.embedders:  # an ensemble's other members
                used.add("extra_misconceptions")
            if cfg.hubness:  # the bank's hub scores, one per member
                used.add("hub_penalties")
            if cfg.votes:  # _with_votes: the label store, and the classifier beside it
                used.add("labels")
                if cfg.uses_classifier:
                    used.add("classifier")
                if cfg.uses_seqclass:
                    used.add("seqclass")
                if cfg.uses_ngram:
                    used.add("ngram")
        if "rerank" in nodes and cfg.reranker not in LLM_RERANKERS:
            used.add("cross_encoder")
        return used

    @property
    def uses_llm(self) -> bool:
        """Whether any node this config runs calls the LLM (Eedi and MAP misconception runs do not)."""
        return "llm" in self.resources_used()

    def build(self) -> StateGraph:
        names = self.nodes()
        graph = StateGraph(AgentState)
        for name in names:
            graph.add_node(name, getattr(self, name))
        chain = [n for n in names if n != "reconsider"]
        graph.add_edge(START, chain[0])
        for current, following in pairwise(chain):
            if current == "verify" and "reconsider" in names:
                graph.add_conditional_edges(
                    "verify",
                    lambda s, nxt=following: "reconsider" if self.needs_reconsider(s) else nxt,
                    ["reconsider", following],
                )
                graph.add_edge("reconsider", "verify")
            else:
                graph.add_edge(current, following)
        graph.add_edge(chain[-1], END)
        return graph
