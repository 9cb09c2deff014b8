"""The package layout DESIGN.md promises: one import package `mcqa` whose subpackages live in the
top-level folders, in editable and regular installs alike, and no top-level `kaggle`/`eval` module."""

import subprocess
import sys
import zipfile
from pathlib import Path

import mcqa

ROOT = Path(mcqa.__file__).resolve().parent.parent
SUBPACKAGES = ("agent", "rag", "finetune", "eval", "kaggle")


def test_subpackages_import_from_their_folders():
    import importlib

    for name in SUBPACKAGES:
        module = importlib.import_module(f"mcqa.{name}")
        assert Path(module.__file__).resolve().parent == ROOT / name


def test_regular_wheel_maps_folders_into_mcqa(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("mcqa_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in SUBPACKAGES:
        assert f"mcqa/{name}/__init__.py" in names
    top_level = {n.split("/")[0] for n in names if not n.startswith("mcqa_agent-")}
    assert top_level == {"mcqa"}, top_level


def test_hub_access_is_off_in_the_command():
    import os

    import mcqa.cli  # noqa: F401 - the `mcqa` command's module sets the flags for its process

    assert os.environ["HF_HUB_OFFLINE"] == "1"
