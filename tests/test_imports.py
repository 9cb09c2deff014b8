"""Every module of the package imports on its own, in a fresh interpreter.

Importing a whole program hides import cycles: `import mcqa.cli` worked while `import mcqa.rag.cli`
alone failed, because mcqa.cli and the command modules imported each other and only one order of
first import got through. A fresh interpreter per module tries every order a user (or a test, a
notebook, a Ray worker) can start from. Heavy and optional packages (vLLM, unsloth, FAISS, the
model packages) are imported inside functions by convention, so no module is skipped on a CPU machine.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_modules() -> list[str]:
    """Every package pyproject.toml ships, and every module in them.

    Walking `mcqa.__path__` alone would miss mcqa.agent, mcqa.rag, ...: they live in top-level
    folders mapped into `mcqa` by setuptools (see DESIGN.md), so each listed package is walked from
    its own folder. `find_spec` locates a folder without running the package's code.
    """
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    names = set(packages)
    for package in packages:
        folders = importlib.util.find_spec(package).submodule_search_locations
        names.update(info.name for info in pkgutil.walk_packages(folders, f"{package}."))
    return sorted(names)


MODULES = package_modules()


def import_alone(name: str, cwd: Path) -> subprocess.CompletedProcess:
    # Outside the repository, so the installed package is imported, as a user gets it.
    return subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def imports(request, tmp_path_factory):
    """The import of each selected module, started at once on two workers (a fresh interpreter costs
    a fraction of a second to a second and a half; 2 keeps a busy machine usable)."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    cwd = tmp_path_factory.mktemp("imports")
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {name: pool.submit(import_alone, name, cwd) for name in selected}


def test_the_walk_finds_every_subpackage():
    for name in (
        "mcqa.cli",
        "mcqa.cli_common",
        "mcqa.llm.cli",
        "mcqa.datasets.eedi",
        "mcqa.agent.graph",
        "mcqa.rag.cli",
        "mcqa.eval.cli",
        "mcqa.finetune.cli",
        "mcqa.kaggle.cli",
    ):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_imports_alone(name, imports):
    proc = imports[name].result()
    assert proc.returncode == 0, f"`python -c 'import {name}'` failed:\n{proc.stderr}"
