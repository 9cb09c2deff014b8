"""Crash safety, for real: `mcqa eval run` as a subprocess with the tiny model, killed with SIGKILL
after some predictions have appeared, started again, killed again, then let finish. Its predictions
file must hold the same predictions (as a set, none lost, none twice) as an uninterrupted run's."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

MCQA = str(Path(sys.executable).with_name("mcqa"))
# The real solver (the agent graph, answer node only, so the test stays in tens of seconds).
CONFIG = "llm:\n  model: smollm2-135m\n  n_threads: 1\n  n_ctx: 1024\nagent:\n  verify: false\n"
N_ITEMS = 6


def command(out: Path, config: Path, data_root: Path) -> list[str]:
    return [
        MCQA,
        "eval",
        "run",
        "--dataset",
        "arc_challenge",
        "--limit",
        str(N_ITEMS),
        "--batch-size",
        "2",
        "--config",
        str(config),
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
    ]


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_and_kill(cmd: list[str], predictions: Path, after_lines: int, timeout: float = 180) -> int:
    """Start the run, SIGKILL it as soon as `after_lines` lines are in the file; the lines at the kill."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while count_lines(predictions) < after_lines:
            assert process.poll() is None or count_lines(predictions) >= after_lines, "the run ended before the kill"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    return count_lines(predictions)


def prediction_set(path: Path) -> tuple[list[str], set[str]]:
    """(item ids in file order, the predictions as canonical JSON without their per-process trace id)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["item_id"] for r in rows], {
        json.dumps({k: v for k, v in r.items() if k != "trace_id"}, sort_keys=True) for r in rows
    }


def test_sigkilled_and_resumed_run_equals_an_uninterrupted_one(tmp_path, data_root):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)

    reference = tmp_path / "reference"
    done = subprocess.run(command(reference, config, data_root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference_ids, reference_set = prediction_set(reference / "predictions.jsonl")
    assert sorted(reference_ids, key=int) == [str(i) for i in range(1, N_ITEMS + 1)]

    crashed = tmp_path / "crashed"
    predictions = crashed / "predictions.jsonl"
    killed_at = [run_and_kill(command(crashed, config, data_root), predictions, n) for n in (1, 3)]
    assert killed_at[0] < N_ITEMS and killed_at[1] > killed_at[0]  # each run got somewhere and was cut short
    finished = subprocess.run(command(crashed, config, data_root), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr

    ids, crashed_set = prediction_set(predictions)
    assert len(ids) == len(set(ids)) == N_ITEMS  # nothing lost, nothing twice
    assert crashed_set == reference_set
    metrics = json.loads((crashed / "metrics.json").read_text())
    assert metrics["run"]["predicted"] == N_ITEMS and metrics["run"]["pending"] == 0
    invocations = json.loads((crashed / "run.json").read_text())["invocations"]
    assert invocations[-1]["already_done"] == killed_at[1]  # the killed runs' lines were kept and skipped
