"""metrics.json, report.md and report.html of a run, from the dict `summary.summarize` builds.

report.md is for a terminal or a pull request (tables only); report.html adds the figures, embedded
as base64 PNGs so the file is self-contained. Each wrong answer in the worst-items table carries the
command that replays its trace (`mcqa trace show RUN ITEM`).
"""

from __future__ import annotations

import html
import json
import math
import sys
from pathlib import Path

from mcqa.eval.metrics import COVERAGES
from mcqa.eval.runner import atomic_write


def clean(value):
    """JSON-safe: NaN and infinities become null, tuples lists, keys strings."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def interval(entry: dict, key: str) -> str:
    if not entry or entry.get(key) is None:
        return "-"
    return f"{pct(entry[key])} [{pct(entry.get('low'))}, {pct(entry.get('high'))}]"


def trace_command(run_dir: Path, item_id: str) -> str:
    return f"mcqa trace show {run_dir} {item_id}"


def headline(metrics: dict) -> list[tuple[str, str]]:
    """(name, value) rows of the summary table, shared by both reports and the CLI."""
    run, acc = metrics["run"], metrics["accuracy"]
    rows = [
        (
            "items",
            f"{run['predicted']} predicted of {run['items']}"
            + (f" ({run['pending']} pending)" if run["pending"] else ""),
        )
    ]
    if acc and acc.get("labelled"):
        rows += [
            ("accuracy (95% CI)", interval(acc, "accuracy") + f" on {acc['labelled']} labelled"),
            ("unanswered (counted wrong)", f"{acc['unanswered']} ({acc['errors']} of them backend errors)"),
            ("accuracy of answered items", pct(acc.get("answered_accuracy"))),
        ]
    elif acc:
        rows.append(("accuracy", "n/a: no labelled items"))
    else:
        rows.append(("accuracy", "n/a: this run answered no questions (misconceptions only)"))
    rows.append(("backend errors (Prediction.error)", str(metrics.get("errors", 0))))
    if (b := (run.get("all_invocations") or {}).get("backend")) is not None:
        rows.append(("backend trouble (all invocations)", backend_trouble(b)))
    if m := metrics.get("misconceptions"):
        rows += [
            ("MAP@25 (95% CI)", f"{m['map@25']:.3f} [{m['low']:.3f}, {m['high']:.3f}] over {m['rows']} wrong answers"),
            ("Recall@25", f"{m['recall@25']:.3f}"),
        ]
    if m := metrics.get("map_competition"):
        rows.append(
            ("MAP@3 (95% CI)", f"{m['map@3']:.3f} [{m['low']:.3f}, {m['high']:.3f}] over {m['rows']} responses")
        )
    position = metrics["position"] or {}
    if position.get("rstd") is not None:
        rows.append(("position bias RStd (accuracy points)", f"{position['rstd']:.1f}"))
    if p := metrics.get("permutation"):
        rows.append(
            (
                "permutation consistency",
                f"{pct(p['consistency'])} of {p['items']} items "
                f"({p['copies']} shuffled copies, accuracy {pct(p['copy_accuracy'])})",
            )
        )
    if d := metrics.get("debias"):
        rows.append(
            (
                "debiased accuracy (PriDe)",
                interval(d["accuracy"], "accuracy")
                + f", {d['changed']} answers changed, RStd {_num(d['position'].get('rstd'))}",
            )
        )
    f = metrics["flips"]
    rows.append(
        (
            "answer flips (debias, reconsider)",
            f"{f['flips']} ({f['wrong_to_right']} fixed, {f['right_to_wrong']} broken, "
            f"{f['wrong_to_wrong']} wrong to wrong; net {f['net']:+d})"
            + "".join(
                f"; {step}: {c['wrong_to_right']} fixed, {c['right_to_wrong']} broken"
                for step, c in f.get("by_step", {}).items()
            ),
        )
    )
    rows += tool_rows(metrics.get("tools"))
    if (t := run.get("all_invocations")) and t["invocations"] > 1:
        rows.append(
            (
                "all invocations",
                f"{t['solved']} solved in {t['seconds']:.0f}s ({t['rate']:.2f} items/s) "
                f"over {t['invocations']} invocations",
            )
        )
    if t := run.get("throughput"):
        rows.append(
            (
                "this invocation",
                f"{t['solved']} solved in {t['seconds']:.0f}s ({t['rate']:.2f} items/s), "
                f"{t['already_done']} already done"
                + (" (items and shuffled copies)" if run.get("permute") or run.get("debias") else ""),
            )
        )
    return rows


def backend_trouble(counts: dict) -> str:
    """The backend's trouble over a run, from run.json's per-invocation counters: what made an answer
    rest on less than the model's full view (a cut prompt, one-hot probabilities) or needed retries."""
    return (
        f"{counts.get('truncated_prompts', 0)} prompts cut to fit the context, "
        f"{counts.get('constrained_fallbacks', 0)} constrained-generation fallbacks (one-hot probabilities), "
        f"{counts.get('failed_requests', 0)} failed requests, {counts.get('failed_calls', 0)} failed solver calls "
        f"retried, {counts.get('errors', 0)} items left with an error"
    )


def tool_rows(tools: dict | None) -> list[tuple[str, str]]:
    """The tools' ledger (metrics.tools_summary): what ran, what it named, how right, what was skipped and why."""
    rows = []
    for name, t in (tools or {}).items():
        if name.startswith("accuracy_"):
            continue
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(t["skipped"].items(), key=lambda kv: -kv[1])[:4])
        auroc = "-" if t["verifier_auroc"] is None else f"{t['verifier_auroc']:.3f}"
        rows.append(
            (
                f"tool `{name}`",
                f"ran on {t['ran']} of {t['items']} items ({t['seconds']:.0f}s), named a choice "
                f"on {t['named_a_choice']} (right {pct(t['tool_accuracy'])})"
                + (
                    f", ruled choices out on {t['ruled_out_choices']} (the right one on {t['gold_ruled_out']})"
                    if t.get("ruled_out_choices")
                    else ""
                )
                + "; verifier AUROC "
                f"{auroc}; status {t['status']}" + (f"; skipped: {skipped}" if skipped else ""),
            )
        )
    for subset, label in (
        ("accuracy_tool_named", "where a tool named or ruled out a choice"),
        ("accuracy_no_tool", "where none did"),
    ):
        if (a := (tools or {}).get(subset)) and a.get("accuracy") is not None:
            rows.append((f"accuracy {label}", interval(a, "accuracy") + f" on {a['labelled']}"))
    return rows


CONFIDENCE_HEADER = ["signal", "AUROC", *(f"accuracy, top {float(c):.0%}" for c in COVERAGES), "n"]
CONFIDENCE_NOTE = (
    "AUROC of each signal for telling right answers from wrong (0.5: chance, so it cannot gate "
    "reconsider); accuracy when keeping only the most confident share of graded items."
)


def confidence_rows(confidence: dict) -> list[list]:
    """One row per confidence signal: AUROC and the risk-coverage points (see metrics.confidence_summary)."""
    return [
        [
            name,
            "-" if s["auroc"] is None else f"{s['auroc']:.3f}",
            *(pct(s["accuracy_at_coverage"].get(c)) for c in COVERAGES),
            s["n"],
        ]
        for name, s in confidence.items()
    ]


def _num(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _short(text: str, n: int = 140) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --- Markdown ------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _group_rows(groups: dict, top: int = 15) -> list[list]:
    return [[_short(name, 60), g["n"], interval(g, "accuracy")] for name, g in list(groups.items())[:top]]


def render_markdown(metrics: dict, run_dir: Path) -> str:
    run = metrics["run"]
    parts = [
        f"# {run_dir.name}: {run.get('dataset')}/{run.get('split')} with {run.get('model')}",
        "",
        _md_table(["metric", "value"], [list(r) for r in headline(metrics)]),
    ]
    for field, title in (("by_subject", "Accuracy by subject"), ("by_construct", "Accuracy by construct")):
        if len(metrics[field]) > 1:
            parts += [
                "",
                f"## {title} (largest {min(15, len(metrics[field]))} of {len(metrics[field])})",
                "",
                _md_table(["group", "n", "accuracy (95% CI)"], _group_rows(metrics[field])),
            ]
    position = metrics["position"]
    parts += (
        []
        if not position
        else [
            "",
            "## Position bias",
            "",
            _md_table(
                ["letter", "gold", "predicted"]
                + (["debiased"] if metrics.get("debias") else [])
                + ["accuracy when gold"],
                [
                    [k, position["gold_letters"][k], position["predicted_letters"][k]]
                    + ([metrics["debias"]["position"]["predicted_letters"].get(k, 0)] if metrics.get("debias") else [])
                    + [pct(position["accuracy_by_gold"].get(k, {}).get("accuracy"))]
                    for k in position["gold_letters"]
                ],
            ),
        ]
    )
    if d := metrics.get("debias"):
        parts += [
            "",
            "Letter prior estimated by PriDe (cyclic shifts of "
            f"{d['sample_size']} sample items): "
            + "; ".join(
                f"{n} choices: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()) for n, p in d["prior"].items()
            ),
        ]
    if c := metrics.get("confidence"):
        parts += ["", "## Confidence", "", CONFIDENCE_NOTE, "", _md_table(CONFIDENCE_HEADER, confidence_rows(c))]
    if metrics["worst"]:
        parts += [
            "",
            "## Most confident wrong answers",
            "",
            _md_table(
                ["item", "question", "answered (p)", "gold (p)", "flips", "trace"],
                [
                    [
                        w["item_id"],
                        _short(w["question"], 90),
                        f"{w['answer']} ({_p(w['confidence'])})",
                        f"{w['gold']} ({_p(w['gold_probability'])})",
                        ", ".join(w.get("flips") or []) or "-",
                        f"`{trace_command(run_dir, w['item_id'])}`",
                    ]
                    for w in metrics["worst"]
                ],
            ),
        ]
    return "\n".join(parts) + "\n"


def _p(value) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- HTML ----------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}code{font-size:12px;background:#f6f6f6;padding:1px 3px}img{max-width:100%}
.note{color:#666;font-size:13px}"""


def _html_table(header: list[str], rows: list[list], raw_columns: frozenset = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{v if i in raw_columns else html.escape(str(v))}</td>" for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">' if png else ""


def render_html(metrics: dict, run_dir: Path) -> str:
    from mcqa.eval import plots

    run = metrics["run"]
    title = f"{run_dir.name}: {run.get('dataset')}/{run.get('split')} with {run.get('model')}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        _html_table(["metric", "value"], [list(r) for r in headline(metrics)]),
    ]
    if (why := plots.missing()) is not None:  # the tables still say it all; the figures wait for the extra
        parts.append(f"<p class='note'>No figures in this report: {html.escape(str(why))}</p>")
    for field, label in (("by_subject", "subject"), ("by_construct", "construct")):
        if png := plots.accuracy_by_group(metrics[field], f"accuracy by {label}"):
            parts += [
                f"<h2>Accuracy by {label}</h2>",
                _img(png, f"accuracy by {label}"),
                _html_table([label, "n", "accuracy (95% CI)"], _group_rows(metrics[field], top=30)),
            ]
    debiased = metrics["debias"]["position"] if metrics.get("debias") else None
    if metrics["position"]:
        parts += [
            "<h2>Position bias</h2>",
            _img(plots.letters(metrics["position"], debiased), "letter distributions"),
            "<p class='note'>RStd: standard deviation of the accuracy by gold letter, in points (Zheng et al., "
            "ICLR 2024). A model that reads the content has matching gold and predicted bars.</p>",
        ]
    if p := metrics.get("permutation"):
        parts.append(
            f"<p>Shuffling the choices ({p['copies']} copies of {p['items']} items) kept the answer on "
            f"{pct(p['consistency'])} of the items; accuracy on the copies {pct(p['copy_accuracy'])}.</p>"
        )
    if m := metrics.get("misconceptions"):
        parts += ["<h2>Misconceptions</h2>", _img(plots.map_curve(m["curve"]), "MAP@k curve")]
    parts += ["<h2>Verify / reconsider</h2>", _img(plots.flips(metrics["flips"]), "flips")]
    if c := metrics.get("confidence"):
        parts += [
            "<h2>Confidence</h2>",
            f"<p class='note'>{html.escape(CONFIDENCE_NOTE)}</p>",
            _html_table(CONFIDENCE_HEADER, confidence_rows(c)),
        ]
    if metrics["worst"]:
        rows = [
            [
                html.escape(w["item_id"]),
                html.escape(_short(w["question"], 200)),
                html.escape(f"{w['answer']}. {_short(w['answer_text'], 60)} ({_p(w['confidence'])})"),
                html.escape(f"{w['gold']}. {_short(w['gold_text'], 60)} ({_p(w['gold_probability'])})"),
                html.escape(", ".join(w.get("flips") or []) or "-"),
                f"<code>{html.escape(trace_command(run_dir, w['item_id']))}</code>"
                + (f"<br>trace {html.escape(w['trace_id'])}" if w.get("trace_id") else ""),
            ]
            for w in metrics["worst"]
        ]
        parts += [
            "<h2>Most confident wrong answers</h2>",
            _html_table(["item", "question", "answered (p)", "gold (p)", "flips", "trace"], rows, frozenset(range(6))),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(run_dir: Path, metrics: dict) -> None:
    """metrics.json, report.md, report.html in `run_dir`, each written atomically."""
    run_dir = Path(run_dir)
    metrics = clean(metrics)
    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    atomic_write(run_dir / "report.md", render_markdown(metrics, run_dir))
    atomic_write(run_dir / "report.html", render_html(metrics, run_dir))
    from mcqa.eval.plots import missing

    if (why := missing()) is not None:
        print(f"{why}; report.html is written without them", file=sys.stderr)
