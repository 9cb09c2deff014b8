"""Scale-out on Ray, for real: one local Ray instance (2 CPUs) for the module, replicas of SmolLM2 on
1 thread each, the real agent graph (answer node only). Two replicas predict what one process
predicts; a replica killed with SIGKILL mid-run is restarted and its batch solved again, and an item
that kills every replica it meets is recorded as an error; a driver
(`mcqa eval run --ray ADDRESS`) killed mid-run resumes with nothing lost and nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: `make test-ray` installs the `ray` extra and runs these")

from mcqa.config import load_config  # noqa: E402
from mcqa.datasets import load_split  # noqa: E402
from mcqa.eval.ray_pool import RayPool  # noqa: E402
from mcqa.eval.runner import PredictionLog, run_items  # noqa: E402
from mcqa.solve import build_solver  # noqa: E402

pytestmark = pytest.mark.ray

MCQA = str(Path(sys.executable).with_name("mcqa"))
DATASET, SPLIT = "codemmlu_fpt", "train"
SETTINGS = {
    "llm.model": "smollm2-135m",
    "llm.n_threads": 1,
    "llm.n_ctx": 1024,
    "agent.tasks": ["answer"],
    "agent.verify": False,
    "agent.permutations": 1,
}


@pytest.fixture(scope="module")
def cluster():
    """One local instance for the module (starting one takes seconds); its address, for a driver in a
    subprocess to join. Each test closes its replicas, so the next finds the 2 CPUs free."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def items(data_root):
    return load_split(DATASET, SPLIT, data_root).items


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_replicas_predict_what_one_process_does(cluster, items, data_root, tmp_path):
    cfg, chosen = load_config(**SETTINGS), items[:40]
    with RayPool(cfg, 2, DATASET, SPLIT, data_root) as pool:
        pool.ready()
        on_ray = run_items(pool, chosen, PredictionLog(tmp_path / "ray.jsonl"), batch_size=4)
    alone = run_items(
        build_solver(cfg, dataset=DATASET, split=SPLIT, data_root=data_root),
        chosen,
        PredictionLog(tmp_path / "one.jsonl"),
        batch_size=4,
    )
    assert on_ray.solved == alone.solved == 40 and on_ray.errors == alone.errors == 0
    ray_rows = {row["item_id"]: row for row in lines_of(tmp_path / "ray.jsonl")}
    one_rows = {row["item_id"]: row for row in lines_of(tmp_path / "one.jsonl")}
    assert len(ray_rows) == 40 and ray_rows.keys() == one_rows.keys()
    for item_id, row in one_rows.items():
        other = ray_rows[item_id]
        assert other["answer"] == row["answer"], item_id
        assert other["option_probs"].keys() == row["option_probs"].keys()
        for letter, p in row["option_probs"].items():
            assert other["option_probs"][letter] == pytest.approx(p, abs=1e-3), (item_id, letter)


def test_dead_replicas_are_restarted_and_nothing_is_lost(cluster, items, data_root, tmp_path):
    """One replica SIGKILLed with a batch in flight: Ray starts it again and the batch is solved. One item
    that kills whichever replica solves it: its batch mate is solved alone, it becomes an error prediction."""
    chosen, log_path = items[40:52], tmp_path / "predictions.jsonl"
    poison = chosen[9].id  # after the SIGKILL below

    def poisoned(solver):  # defined here, so cloudpickle ships it by value to the replicas
        def solve(batch):
            if any(item.id == poison for item in batch):
                os._exit(1)
            return solver(batch)

        return solve

    with RayPool(load_config(**SETTINGS), 2, DATASET, SPLIT, data_root, retries=1) as pool:
        pids = pool.ready()
        kill: list[threading.Timer] = []

        def kill_soon(_n: int) -> None:
            # After the first batch, once the loop has handed the freed replica its next batch, both are
            # busy (a batch takes about a second): the one killed dies with a batch in flight.
            if not kill:
                kill.append(threading.Timer(0.3, os.kill, (pids[0], signal.SIGKILL)))
                kill[0].start()

        stats = run_items(pool.wrapped(poisoned), chosen, PredictionLog(log_path), batch_size=2, on_progress=kill_soon)
        after = pool.ready()
    assert after[0] != pids[0]  # Ray started the killed replica again
    rows = lines_of(log_path)
    ids = [row["item_id"] for row in rows]
    assert sorted(ids) == sorted(it.id for it in chosen) and len(ids) == len(set(ids))
    errors = {row["item_id"]: row["error"] for row in rows if "error" in row}
    assert list(errors) == [poison] and "replica died on every try" in errors[poison]
    assert stats.errors == 1


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_killed_driver_resumes_without_duplicates(cluster, data_root, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "llm:\n  model: smollm2-135m\n  n_threads: 1\n  n_ctx: 1024\n"
        "agent:\n  tasks: [answer]\n  verify: false\n  permutations: 1\n"
    )
    out, n = tmp_path / "run", 10
    command = [
        MCQA,
        "eval",
        "run",
        "--dataset",
        DATASET,
        "--split",
        SPLIT,
        "--limit",
        str(n),
        "--batch-size",
        "2",
        "--config",
        str(config),
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
        "--ray",
        cluster,
        "--replicas",
        "2",
    ]
    predictions = out / "predictions.jsonl"
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while count_lines(predictions) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "no predictions"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    killed_at = count_lines(predictions)
    assert killed_at < n

    # Its replicas die with it (Ray kills the actors a dead driver owned), freeing the CPUs for the next run's.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    ids = [row["item_id"] for row in lines_of(predictions)]
    assert len(ids) == len(set(ids)) == n  # nothing lost, nothing twice
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["predicted"] == n and metrics["run"]["pending"] == 0
    invocations = json.loads((out / "run.json").read_text())["invocations"]
    assert invocations[-1]["already_done"] == killed_at and invocations[-1]["solved"] == n - killed_at
