"""Install by need (mcqa.extras): each job's libraries are a pip extra, and a missing one is one line.

A library is made missing by setting its sys.modules entry to None, which is what an uninstalled
package looks like to `import` (ModuleNotFoundError) and to `find_spec` (None). The real thing, a
venv holding only `mcqa-agent[retrieval]` or `mcqa-agent[llm]`, is what `make test-kaggle` installs.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from mcqa.extras import BACKENDS, INCLUDES, MODULES, MissingExtra, check, extras_for, require, requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def missing(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_the_line_names_the_extra_and_the_command(monkeypatch):
    missing(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtra) as caught:
        require("matplotlib", "reports", "drawing report.html's figures")
    assert isinstance(caught.value, ImportError) and caught.value.name == "matplotlib"
    assert str(caught.value) == (
        "drawing report.html's figures needs the 'reports' extra: pip install 'mcqa-agent[reports]'"
    )
    with pytest.raises(MissingExtra, match=r"mcqa train llm needs the 'train' extra"):
        missing(monkeypatch, "peft")
        check("train", "mcqa train llm")
    assert require("json", "reports", "x") is json


def test_pyproject_declares_every_extra_and_a_small_core():
    extras = PYPROJECT["optional-dependencies"]
    for extra in [*MODULES, *BACKENDS.values()]:
        assert extra in extras, f"mcqa.extras names '{extra}', pyproject.toml has no such extra"
    everything = extras["all"][0]
    for extra in MODULES:
        assert extra in everything, f"`all` leaves out '{extra}'"
    core = " ".join(PYPROJECT["dependencies"])
    for heavy in ("torch", "llama-cpp-python", "sentence-transformers", "matplotlib", "peft", "pyarrow", "datasets"):
        assert heavy not in core, f"{heavy} is in the core dependencies: every user would install it"
    for extra, inner in INCLUDES.items():  # train brings retrieval, serve brings llm and openai
        assert f"mcqa-agent[{','.join(inner)}]" in extras[extra], (extra, inner)


def test_each_module_comes_from_a_package_its_extra_lists():
    """The module -> extra table and pyproject's package lists agree (the installed distributions say
    which package holds a module: faiss is faiss-cpu, sklearn is scikit-learn)."""

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    holders = importlib.metadata.packages_distributions()
    extras = PYPROJECT["optional-dependencies"]
    for extra, modules in MODULES.items():
        listed = normal(" ".join(extras[extra]))
        for module in modules:
            if module not in holders:
                continue  # not installed here (the test env has them all; a partial venv skips)
            assert any(normal(d) in listed for d in holders[module]), (module, extra, holders[module])


def test_a_kaggle_task_installs_the_extras_its_nodes_import():
    from mcqa.agent.graph import Agent, default_tasks
    from mcqa.config import load_config

    config = load_config()
    wanted = {"eedi": ["retrieval"], "map": ["retrieval"], "codemmlu_fpt": ["llm"]}
    for dataset, extras in wanted.items():
        used = Agent(config.agent.for_dataset(dataset), None, default_tasks(dataset)).resources_used()
        assert extras_for(used, config.llm.backend) == extras, (dataset, used)
    assert requirement(["retrieval"]) == "mcqa-agent[retrieval]" and requirement([]) == "mcqa-agent"
    assert extras_for({"llm"}, "openai") == ["openai"] and extras_for({"llm"}, "vllm") == []


def test_a_run_stops_before_its_first_item(monkeypatch, data_root):
    """Without sentence-transformers, an Eedi solver is refused when it is built, not item by item."""
    from mcqa.config import load_config
    from mcqa.solve import build_solver

    missing(monkeypatch, "sentence_transformers", "tokenizers")  # neither retrieval nor embed
    with pytest.raises(MissingExtra, match=r"the embedder needs the 'retrieval' extra"):
        build_solver(load_config(), dataset="eedi", split="test", data_root=data_root)


def test_the_cli_prints_one_line(monkeypatch, tmp_path):
    from mcqa.cli import app

    missing(monkeypatch, "pyarrow", "pyarrow.parquet")
    own = tmp_path / "mine.parquet"
    own.write_bytes(b"PAR1")
    result = CliRunner().invoke(app, ["data", "show", str(own), "-c", "question=q", "-c", "choices=a,b"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "needs the 'parquet' extra: pip install 'mcqa-agent[parquet]'" in result.output


def test_report_figures_are_left_out_without_matplotlib(monkeypatch):
    from mcqa.eval import plots

    missing(monkeypatch, "matplotlib")
    assert plots.flips({"wrong_to_right": 1}) is None
    group = {"n": 1, "accuracy": 1.0, "low": 1.0, "high": 1.0}
    assert plots.accuracy_by_group({"a": group, "b": group}, "t") is None
    assert "pip install 'mcqa-agent[reports]'" in str(plots.missing())
