"""The report's figures as base64 PNGs, so report.html is one file that opens anywhere offline.

matplotlib is imported here only (with the Agg backend: no display needed), and this module only
from the report step, so `mcqa --help` and the runner never pay for it. Each function returns None
when its metric is absent, and the report leaves that figure out. Without matplotlib (the `reports`
extra) every function returns None: a run's report.html is still written, with its tables and a note
that says which extra adds the figures (`missing`), rather than a finished run failing at its last step.
"""

from __future__ import annotations

import base64
import functools
import io

from mcqa.extras import MissingExtra, installed, require


def missing() -> MissingExtra | None:
    """Why report.html has no figures (matplotlib, the `reports` extra, is not installed), or None."""
    return None if installed("matplotlib") else MissingExtra("matplotlib", "reports", "drawing report.html's figures")


def _figure(draw):
    """A figure function that gives None (the report leaves the figure out) where matplotlib is missing."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        return None if missing() else draw(*args, **kwargs)

    return wrapper


def _pyplot():
    matplotlib = require("matplotlib", "reports", "drawing report.html's figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@_figure
def accuracy_by_group(groups: dict[str, dict], title: str, top: int = 20) -> str | None:
    """Horizontal bars with 95% intervals for the `top` largest groups (subject, construct)."""
    if len(groups) < 2:
        return None
    plt = _pyplot()
    shown = list(groups.items())[:top][::-1]
    names = [f"{name[:40]} (n={g['n']})" for name, g in shown]
    values = [g["accuracy"] for _, g in shown]
    errors = [
        [max(0.0, v - g["low"]) for v, (_, g) in zip(values, shown, strict=True)],  # an unforced interval
        [max(0.0, g["high"] - v) for v, (_, g) in zip(values, shown, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    ax.barh(names, values, xerr=errors, color="#4C72B0", ecolor="#555555", capsize=2)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% bootstrap interval)")
    ax.set_title(title)
    return _png(fig)


@_figure
def letters(position: dict, debiased: dict | None = None) -> str | None:
    """Left: how often each letter is the gold answer vs the predicted one (and after debiasing).
    Right: accuracy when the gold answer is each letter. A flat model shows matching bars."""
    if not position.get("gold_letters"):
        return None
    plt = _pyplot()
    keys = list(position["gold_letters"])
    series = [("gold", position["gold_letters"], "#999999"), ("predicted", position["predicted_letters"], "#4C72B0")]
    if debiased:
        series.append(("debiased", debiased["predicted_letters"], "#55A868"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / len(series)
    for i, (label, counts, color) in enumerate(series):
        left.bar(
            [j + i * width for j in range(len(keys))], [counts.get(k, 0) for k in keys], width, label=label, color=color
        )
    left.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(keys))], keys)
    left.set_ylabel("items")
    left.set_title("letter distribution")
    left.legend()
    by_gold = position["accuracy_by_gold"]
    right.bar(
        [f"{k}\n(n={by_gold[k]['n'] if k in by_gold else 0})" for k in keys],
        [by_gold[k]["accuracy"] if k in by_gold else 0 for k in keys],
        color="#C44E52",
    )
    right.set_ylim(0, 1)
    right.set_title(
        f"accuracy by gold letter (RStd {position['rstd']:.1f})"
        if position.get("rstd") is not None
        else "accuracy by gold letter"
    )
    return _png(fig)


@_figure
def map_curve(curve: dict) -> str | None:
    """MAP@k for k = 1..25: how much each extra candidate adds."""
    if not curve:
        return None
    plt = _pyplot()
    ks = sorted(int(k) for k in curve)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(ks, [curve[k] if k in curve else curve[str(k)] for k in ks], marker="o", markersize=3)
    ax.set_xlabel("k")
    ax.set_ylabel("MAP@k")
    ax.set_ylim(bottom=0)
    ax.set_title("misconception ranking: MAP@k")
    return _png(fig)


@_figure
def flips(ledger: dict) -> str | None:
    """The flip ledger (debiasing and verify/reconsider): fixes, harms and sideways moves."""
    plt = _pyplot()
    kinds = ["wrong_to_right", "right_to_wrong", "wrong_to_wrong", "unlabelled"]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(
        [k.replace("_", " ") for k in kinds],
        [ledger.get(k, 0) for k in kinds],
        color=["#55A868", "#C44E52", "#8172B2", "#999999"],
    )
    ax.set_ylabel("answers flipped")
    ax.set_title(f"answer flips (net {ledger.get('net', 0):+d})")
    return _png(fig)
