"""The batch runner with the real tiny model (zero-shot Solver over llama.cpp) on real ARC items:
resuming, torn lines, retries and recorded errors, refusing another config, the lock."""

import json

import pytest
import yaml

from mcqa.config import LLMConfig, load_config
from mcqa.datasets import load_split
from mcqa.eval.runner import BackendDown, PredictionLog, RunDir, RunError, run_items, solve_with_retries
from mcqa.solve import zero_shot_solver


@pytest.fixture(scope="module")
def tiny_llm():
    """The real SmolLM2-135M on one thread: with other processes on the two cores, two threads ran
    4-5x slower than one here (FACTS.md: two threads can collapse under contention)."""
    from mcqa.llm import load_llm

    llm = load_llm(LLMConfig(model="smollm2-135m", n_ctx=2048, n_threads=1))
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def items(data_root):
    return load_split("arc_challenge", "test", data_root).items[:6]


class Recording:
    """The real solver, noting which items each call was given (and failing where a test injects it)."""

    def __init__(self, llm, fail_when=lambda batch, call: False):
        self.solve, self.fail_when, self.calls = zero_shot_solver(llm), fail_when, []

    def __call__(self, batch):
        self.calls.append([it.id for it in batch])
        if self.fail_when(batch, len(self.calls)):
            raise RuntimeError("injected backend failure")
        return self.solve(batch)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_solves_only_what_is_missing(tmp_path, tiny_llm, items):
    path = tmp_path / "predictions.jsonl"
    first = Recording(tiny_llm)
    stats = run_items(first, items[:2], PredictionLog(path), batch_size=2)
    assert stats.solved == 2 and first.calls == [["1", "2"]]
    again = Recording(tiny_llm)
    stats = run_items(again, items[:4], PredictionLog(path), batch_size=2)
    assert stats.already_done == 2 and stats.solved == 2
    assert again.calls == [["3", "4"]]
    written = lines(path)
    assert [p["item_id"] for p in written] == ["1", "2", "3", "4"]
    assert all(p["answer"] in "ABCD" and "error" not in p for p in written)
    assert run_items(Recording(tiny_llm), items[:4], PredictionLog(path)).solved == 0


def test_a_torn_last_line_is_cut_off_and_the_item_solved_again(tmp_path, tiny_llm, items):
    path = tmp_path / "predictions.jsonl"
    run_items(Recording(tiny_llm), items[:2], PredictionLog(path), batch_size=2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"item_id":"3","answer":"B","option_pro')  # killed mid-write
    log = PredictionLog(path)
    assert log.dropped_bytes == len(b'{"item_id":"3","answer":"B","option_pro')
    assert path.read_bytes() == whole and set(log.done) == {"1", "2"}
    resumed = Recording(tiny_llm)
    run_items(resumed, items[:3], log)
    assert resumed.calls == [["3"]]
    assert [p["item_id"] for p in lines(path)] == ["1", "2", "3"]


def test_damage_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"item_id":"1","answer":"A"}\nnot json\n{"item_id":"2","answer":"B"}\n')
    with pytest.raises(RunError, match="line 2"):
        PredictionLog(path)
    compare_view = tmp_path / "other.jsonl"
    compare_view.write_text('{"item_id":"1","answer":"A"}\n{"item_id":"2"')
    assert set(PredictionLog(compare_view, repair=False).done) == {"1"}
    assert compare_view.read_text().endswith('{"item_id":"2"')  # a reader leaves a live run alone


def test_a_transient_error_is_retried(tiny_llm, items):
    solver = Recording(tiny_llm, fail_when=lambda batch, call: call == 1)
    predictions = solve_with_retries(solver, items[:1], retries=2, backoff=0)
    assert predictions[0].error is None and predictions[0].answer in "ABCD"
    assert solver.calls == [["1"], ["1"]]


def test_a_persistent_error_is_recorded_against_its_items_and_the_run_goes_on(tmp_path, tiny_llm, items):
    poisoned = Recording(tiny_llm, fail_when=lambda batch, call: any(it.id == "3" for it in batch))
    path = tmp_path / "predictions.jsonl"
    stats = run_items(poisoned, items[:4], PredictionLog(path), batch_size=2, retries=1, backoff=0)
    assert stats.solved == 4 and stats.errors == 1
    assert poisoned.calls == [["1", "2"], ["3", "4"], ["3", "4"], ["3"], ["4"]]
    written = {p["item_id"]: p for p in lines(path)}
    assert "injected backend failure" in written["3"]["error"] and written["3"]["correct"] is False
    assert written["4"]["answer"] in "ABCD" and "error" not in written["4"]  # its batch mate, tried alone
    log = PredictionLog(path)
    assert log.drop_errors() == 1 and [p["item_id"] for p in lines(path)] == ["1", "2", "4"]


def test_a_backend_that_is_down_stops_the_run_without_recording(tmp_path, tiny_llm, items):
    down = Recording(tiny_llm, fail_when=lambda batch, call: True)
    path = tmp_path / "predictions.jsonl"
    with pytest.raises(BackendDown, match="injected backend failure"):
        run_items(down, items, PredictionLog(path), batch_size=2, retries=0, backoff=0, max_failed_batches=2)
    assert not path.exists() or path.read_text() == ""


def test_another_config_is_refused_and_speed_settings_are_not(tmp_path):
    run = RunDir(tmp_path / "run")
    source = {"dataset": "arc_challenge", "split": "test"}
    config = load_config(None, **{"llm.model": "smollm2-135m", "llm.n_threads": 1})
    run.lock()
    run.check(config, source)
    run.start(config, source)
    run.predictions.write_text('{"item_id":"1","answer":"A"}\n')
    run.check(load_config(None, **{"llm.model": "smollm2-135m", "llm.n_threads": 2}), source)  # threads may change
    with pytest.raises(RunError, match="llm.model: 'smollm2-135m' -> 'qwen2.5-coder-1.5b'"):
        run.check(load_config(None, **{"llm.n_threads": 1}), source)
    with pytest.raises(RunError, match="split: 'test' -> 'dev'"):
        run.check(config, {"dataset": "arc_challenge", "split": "dev"})
    with pytest.raises(RunError, match="another `mcqa eval run`"):
        RunDir(tmp_path / "run").lock()
    # a run made before a setting existed: its default resumes (it keeps the old behaviour), another value does not
    stored = yaml.safe_load(run.file("config.yaml").read_text())
    del stored["agent"]["few_shot_order"]
    run.file("config.yaml").write_text(yaml.safe_dump(stored))
    run.check(config, source)
    with pytest.raises(RunError, match=r"agent.few_shot_order: '\(unset\)' -> 'nearest_last'"):
        run.check(load_config(None, **{"llm.model": "smollm2-135m", "agent.few_shot_order": "nearest_last"}), source)
    run.clear()
    assert not run.predictions.exists() and not run.file("config.yaml").exists()
    run.check(load_config(None), source)  # after --force anything goes


class FailingOn:
    """The real model, except that scoring a prompt holding `question` raises (a backend fault)."""

    def __init__(self, llm, question):
        self.llm, self.question, self.stats = llm, question, llm.stats

    def score_options(self, chats, options):
        if any(self.question in m["content"] for chat in chats for m in chat):
            raise RuntimeError("injected backend failure")
        return self.llm.score_options(chats, options)

    def generate(self, *args, **kwargs):
        return self.llm.generate(*args, **kwargs)


def test_mcqa_solve_goes_through_the_one_batch_loop(tiny_llm, items):
    """`mcqa solve` streams an error prediction for an item the backend fails on and goes on."""
    from mcqa.solve import solve

    told = []
    predictions = list(solve(FailingOn(tiny_llm, items[1].question), items[:3], batch_size=3, on_batch=told.append))
    assert [p.item_id for p in predictions] == [it.id for it in items[:3]] and told == [3]
    assert "injected backend failure" in predictions[1].error and predictions[1].correct is False
    assert all(p.error is None and p.answer in "ABCDE" for p in (predictions[0], predictions[2]))
