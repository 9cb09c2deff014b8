"""A run folder says exactly what ran: the resolved config (every by-dataset default filled in), the
version, commit and model checksums, a refused resume when any of it changed, PriDe's prior kept for
a resumed run, backend trouble counted in the reports, and labelled test files scored and compared.
The real tiny model (SmolLM2 through llama.cpp) on real ARC and CodeMMLU items."""

from __future__ import annotations

import csv
import hashlib
import json
from itertools import islice

import pytest
import yaml
from typer.testing import CliRunner

import mcqa
from mcqa.agent.config import OTHER_DEFAULTS
from mcqa.cli import app
from mcqa.config import load_config, parse_settings
from mcqa.models import resolve

runner = CliRunner()
TINY = ["--model", "smollm2-135m", "--threads", "1", "--set", "llm.n_ctx=1024", "--batch-size", "2"]


def arc_run(out, data_root, limit, *extra):
    args = ["eval", "run", "--dataset", "arc_challenge", "--limit", str(limit), "--out", str(out)]
    return runner.invoke(app, [*args, "--data-dir", str(data_root), "--no-traces", *TINY, *extra])


@pytest.fixture(scope="module")
def arc_folder(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("runs") / "arc"
    result = arc_run(out, data_root, 2)
    assert result.exit_code == 0, result.output
    return out


def test_the_stored_config_is_the_resolved_one(arc_folder):
    stored = yaml.safe_load((arc_folder / "config.yaml").read_text())["agent"]
    # None means "by dataset" in a config; the run folder keeps what the run used
    assert stored["tasks"] == ["answer"]
    assert stored["permutations"] == OTHER_DEFAULTS["permutations"] == 1
    assert stored["tools"] == [] and stored["scoring"] == "letter" and stored["hubness"] == 0.0
    assert None not in (stored["votes"], stored["classifier"], stored["sibling_contrast"])


def test_run_json_records_version_commit_and_model_checksum(arc_folder):
    meta = json.loads((arc_folder / "run.json").read_text())
    made_by = meta["provenance"]
    assert made_by["mcqa_version"] == mcqa.__version__
    assert made_by["commit"] is None or len(made_by["commit"].split("+")[0]) == 40
    model = made_by["models"]["llm"]
    assert model["name"] == "smollm2-135m"
    assert model["sha256"] == hashlib.sha256(resolve("smollm2-135m").read_bytes()).hexdigest()
    assert "embedder" not in made_by["models"]  # an answer-only run loads no embedder
    assert meta["invocations"][-1]["mcqa_version"] == mcqa.__version__


def test_a_changed_default_refuses_the_resume_then_accept_changes_goes_on(arc_folder, data_root, tmp_path, monkeypatch):
    out = tmp_path / "arc"
    out.mkdir()
    for name in ("config.yaml", "run.json", "predictions.jsonl"):
        (out / name).write_bytes((arc_folder / name).read_bytes())
    monkeypatch.setitem(OTHER_DEFAULTS, "permutations", 2)  # as if a new version changed the default
    refused = arc_run(out, data_root, 3)
    assert refused.exit_code == 2
    assert "agent.permutations: 1 -> 2" in refused.output and "--accept-changes" in refused.output
    assert sum(1 for _ in open(out / "predictions.jsonl")) == 2  # nothing solved, nothing lost

    accepted = arc_run(out, data_root, 3, "--accept-changes")
    assert accepted.exit_code == 0, accepted.output
    assert sum(1 for _ in open(out / "predictions.jsonl")) == 3
    meta = json.loads((out / "run.json").read_text())
    assert meta["changes"][-1]["differences"] == ["agent.permutations: 1 -> 2"]
    assert yaml.safe_load((out / "config.yaml").read_text())["agent"]["permutations"] == 2
    again = arc_run(out, data_root, 3)  # the accepted config is now the run's: no second refusal
    assert again.exit_code == 0, again.output


def test_a_changed_model_file_refuses_the_resume(arc_folder, data_root, tmp_path):
    out = tmp_path / "arc"
    out.mkdir()
    for name in ("config.yaml", "predictions.jsonl"):
        (out / name).write_bytes((arc_folder / name).read_bytes())
    meta = json.loads((arc_folder / "run.json").read_text())
    meta["provenance"]["models"]["llm"]["sha256"] = "0" * 64  # the weights behind the name were others
    (out / "run.json").write_text(json.dumps(meta))
    refused = arc_run(out, data_root, 3)
    assert refused.exit_code == 2
    assert "model llm (smollm2-135m): sha256 000000000000 ->" in refused.output


def test_a_resumed_run_divides_by_the_prior_its_first_invocation_estimated(data_root, tmp_path):
    out = tmp_path / "pride"
    first = arc_run(out, data_root, 4, "--set", "agent.pride=2")
    assert first.exit_code == 0, first.output
    saved = json.loads((out / "pride.json").read_text())
    assert saved["pride"] == 2 and len(saved["priors"]["4"]) == 4
    # A prior that all but forbids A: a resumed run that reads it back can never answer A; one that
    # estimated a prior of its own (the old behaviour) would score the next items under every shift.
    saved["priors"]["4"] = [0.97, 0.01, 0.01, 0.01]
    (out / "pride.json").write_text(json.dumps(saved))
    resumed = arc_run(out, data_root, 8, "--set", "agent.pride=2")
    assert resumed.exit_code == 0, resumed.output
    rows = [json.loads(line) for line in open(out / "predictions.jsonl")]
    later = rows[4:]
    assert len(later) == 4 and all(r["answer"] != "A" for r in later)
    assert json.loads((out / "pride.json").read_text())["priors"]["4"] == [0.97, 0.01, 0.01, 0.01]


def test_prompts_cut_to_fit_reach_metrics_and_reports(data_root, tmp_path):
    out = tmp_path / "cut"
    args = ["eval", "run", "--dataset", "codemmlu_fpt", "--split", "train", "--limit", "2", "--out", str(out)]
    extra = ["--set", "agent.tools=[]", "--set", "llm.n_ctx=64", "--no-traces", "--data-dir", str(data_root)]
    result = runner.invoke(app, [*args, *extra, *TINY[:4], "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    backend = metrics["run"]["all_invocations"]["backend"]
    assert backend["truncated_prompts"] >= 2 and backend["errors"] == 0
    invocation = json.loads((out / "run.json").read_text())["invocations"][-1]
    assert invocation["backend"]["truncated_prompts"] == backend["truncated_prompts"]
    line = f"{backend['truncated_prompts']} prompts cut to fit the context"
    assert line in (out / "report.md").read_text() and line in (out / "report.html").read_text()


@pytest.fixture
def labelled_codemmlu_test(tmp_path, data_root):
    """A data folder whose CodeMMLU test file carries an `answer` column (as a held-out copy does)."""
    folder = tmp_path / "data" / "codemmlu_fpt"
    folder.mkdir(parents=True)
    with (data_root / "codemmlu_fpt" / "b6_train_data.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, fields = list(islice(reader, 6)), reader.fieldnames
    for name in ("b6_train_data.csv", "b6_test_data.csv"):
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return folder.parent, [r["answer"].strip()[-1] for r in rows]


def test_a_labelled_codemmlu_test_file_is_scored_and_compared(labelled_codemmlu_test, tmp_path):
    from mcqa.datasets import load_split

    root, answers = labelled_codemmlu_test
    items = load_split("codemmlu_fpt", "test", root).items
    assert [it.answer for it in items] == answers
    outs = []
    for name, permutations in (("a", 1), ("b", 2)):
        out = tmp_path / name
        args = ["eval", "run", "--dataset", "codemmlu_fpt", "--split", "test", "--limit", "4", "--out", str(out)]
        extra = ["--set", "agent.tools=[]", "--set", f"agent.permutations={permutations}", "--no-traces"]
        result = runner.invoke(app, [*args, *extra, "--data-dir", str(root), *TINY])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "metrics.json").read_text())["accuracy"]["labelled"] == 4
        outs.append(out)
    compared = runner.invoke(app, ["eval", "compare", *map(str, outs), "--json", "--data-dir", str(root)])
    assert compared.exit_code == 0, compared.output
    rows = {row["metric"]: row for row in json.loads(compared.output)["metrics"]}
    assert rows["accuracy"]["shared_items"] == 4


def test_set_takes_nested_keys_and_typed_values():
    overrides = parse_settings(
        [
            "agent.prompts.verify=Is {answer} right?",
            "agent.tools=[execute, compute]",
            "agent.votes=3",
            "agent.verify=true",
            "agent.hubness=null",
            "llm.timeout=2.5",
        ]
    )
    cfg = load_config(None, **overrides)
    assert cfg.agent.prompts.verify == "Is {answer} right?"
    assert cfg.agent.tools == ["execute", "compute"] and cfg.agent.votes == 3 and cfg.agent.verify is True
    assert cfg.agent.hubness is None and cfg.llm.timeout == 2.5
    assert load_config(None, **parse_settings(["agent.hubness=0.5", "agent.hubness=null"])).agent.hubness is None
    with pytest.raises(ValueError, match="section.key=value"):
        parse_settings(["votes=3"])
    with pytest.raises(ValueError, match="not a section"):
        load_config(None, **parse_settings(["agent.votes=3", "agent.votes.weight=3"]))
    with pytest.raises(ValueError, match="agent.votes"):  # pydantic names the key
        load_config(None, **parse_settings(["agent.votes.weight=3"]))


def test_an_empty_agent_section_with_set_works(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("llm:\n  model: smollm2-135m\nagent:\n")
    assert load_config(path, **parse_settings(["agent.votes=2"])).agent.votes == 2
    assert load_config(path).agent.votes is None
    result = runner.invoke(app, ["eval", "run", "-d", "arc_challenge", "-o", str(tmp_path / "r"), "--config",
                                 str(path), "--set", "agent.votes.x=1"])  # fmt: skip
    assert result.exit_code == 2 and "agent.votes" in result.output
