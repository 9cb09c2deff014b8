"""Answers that depend on the content, not on the letter: permutation ensembling and PriDe.

The default 1.5B model picks B far more often than B is right (docs/results.md, "Answer quality"). Two
remedies change the answer itself, not only the report:
- **Permutation ensembling**: score the item under K cyclic shifts of its choices and average each
  original choice's probability over the K presentations. With K = the number of choices every
  choice sits at every position once, so the position preference cancels. Costs K prompts an item,
  though the prompts share the question as a prefix (the llama.cpp prefix cache, vLLM's prefix
  caching), so a shift costs only its choices' tokens.
- **PriDe** (Zheng et al., ICLR 2024): the first N items of a run are scored under every cyclic
  shift; the mean log-probability each *position* gets over the shifts estimates the model's letter
  prior (the content averages out). Every later item is scored once and its probabilities divided by
  that prior. Costs n prompts for N items, one for the rest.

`AnswerDebias` holds the run's prior estimate, so one instance serves every batch of a run (the
solver keeps its agent). With `keep_prior_in(path)` (a run folder's pride.json) a completed prior is
written there and read back by a resumed run, which then divides by the same prior instead of
estimating another from its first remaining items.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from mcqa.eval.bias import cyclic_orders, position_prior


class AnswerDebias:
    """Which presentations of an item to score, and how to turn their scores into one distribution."""

    def __init__(self, permutations: int = 1, pride: int = 0):
        self.permutations, self.pride = permutations, pride
        self.priors: dict[int, list[np.ndarray]] = defaultdict(list)  # n choices -> per-item prior estimates
        self.claimed: dict[int, int] = defaultdict(int)  # sample places handed out (a batch claims before scoring)
        self.saved: dict[int, np.ndarray] = {}  # n choices -> a prior read from `prior_file`
        self.prior_file: Path | None = None

    def keep_prior_in(self, path: Path) -> None:
        """Write each completed prior to `path` (JSON), and take the priors already there as complete."""
        self.prior_file = Path(path)
        if self.prior_file.exists():
            stored = json.loads(self.prior_file.read_text())
            for n, prior in stored.get("priors", {}).items():
                self.saved[int(n)] = np.asarray(prior, dtype=float)
                self.claimed[int(n)] = max(self.claimed[int(n)], self.pride)  # no more shifted samples

    def _write_priors(self) -> None:
        if self.prior_file is None:
            return
        priors = {n: self.prior(n) for n in sorted(set(self.priors) | set(self.saved))}
        body = {"pride": self.pride, "priors": {str(n): p.tolist() for n, p in priors.items() if p is not None}}
        tmp = self.prior_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.prior_file)

    def orders(self, n: int) -> list[list[int]]:
        """The presentations to score (order[j] = the original choice shown at position j), the
        original first. Every cyclic shift while the PriDe sample for n choices is still filling."""
        shifts = cyclic_orders(n)
        if self.pride and self.claimed[n] < self.pride:
            self.claimed[n] += 1
            return [list(range(n))] + shifts
        return [list(range(n))] + shifts[: max(0, self.permutations - 1)]

    def prior(self, n: int) -> np.ndarray | None:
        """The letter prior for n choices once the sample is complete (or read back), else None."""
        if n in self.saved:
            return self.saved[n]
        estimates = self.priors.get(n, [])
        if not self.pride or len(estimates) < self.pride:
            return None
        mean = np.mean(estimates[: self.pride], axis=0)
        return mean / mean.sum()

    def combine(self, orders: list[list[int]], position_probs: list[np.ndarray]) -> tuple[np.ndarray, str | None]:
        """One probability per original choice from the scores of each presentation, and the step
        that shaped it: "permute" (averaged over shifts), "pride" (divided by the prior) or None.

        `position_probs[k][j]`: the probability of position j when shown in `orders[k]`.
        """
        n = len(orders[0])
        by_choice = np.empty((len(orders), n))
        for row, (order, probs) in enumerate(zip(orders, position_probs, strict=True)):
            by_choice[row, order] = probs
        averaged = by_choice.mean(axis=0)
        if len(orders) == n and n > 1:  # a full cycle: position preference cancels; also a PriDe sample
            if self.pride and n not in self.saved and len(self.priors[n]) < self.pride:
                self.priors[n].append(position_prior(np.array(position_probs)))
                if len(self.priors[n]) == self.pride:
                    self._write_priors()
            return averaged / averaged.sum(), "permute"
        prior = self.prior(n)
        if prior is not None:
            corrected = averaged / prior
            return corrected / corrected.sum(), "pride"
        return averaged / averaged.sum(), "permute" if len(orders) > 1 else None
