"""mcqa.eval: the batch runner over splits and what it reports.

runner (resumable, crash-safe run folders), metrics (accuracy with intervals, MAP@k, Recall@k),
bias (position bias, permutation runs, PriDe debiasing), summary + report + plots (metrics.json,
report.md, report.html), compare (two runs, paired bootstrap), cli (`mcqa eval run|compare`).
"""
