"""Every config shipped in finetune/configs/ loads: a typo in a committed recipe (an unknown key, a value
out of range) would otherwise surface only when a user starts a 10-minute training run."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from mcqa.config import load_config, read_yaml_mapping
from mcqa.finetune.cli import RECIPES
from mcqa.finetune.common import load_train_config

FOLDER = Path(__file__).resolve().parents[1] / "finetune" / "configs"
CONFIGS = sorted(FOLDER.glob("*.yaml"))


def recipe_config(recipe: str, name: str):
    return load_train_config(importlib.import_module(RECIPES[recipe]).Config, FOLDER / name)


def test_the_configs_folder_is_found():
    assert len(CONFIGS) >= 5, f"expected the shipped configs in {FOLDER}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_committed_config_loads_with_the_command_its_header_gives(path):
    head = "\n".join(path.read_text().splitlines()[:3])
    command = re.search(r"^# mcqa (train (\w+)|eval run) ", head, re.MULTILINE)
    assert command, f"{path.name} should begin with the command that uses it"
    recipe = command.group(2)
    if recipe is None:
        config = load_config(path)
        assert config.agent.embedder, "an agent config names its embedder"
    else:
        config = recipe_config(recipe, path.name)
        written = read_yaml_mapping(path)
        assert all(config.model_dump()[k] == v for k, v in written.items() if not isinstance(v, dict))


def test_the_agent_and_reranker_query_in_the_format_their_embedder_was_trained_on():
    trained = recipe_config("embedder", "embedder-eedi.yaml").query_format
    assert load_config(FOLDER / "agent-eedi-tuned.yaml").agent.query_format == trained
    assert load_config(FOLDER / "agent-eedi-best.yaml").agent.query_format == trained
    assert recipe_config("embedder", "embedder-eedi-mpnet.yaml").query_format == trained
    assert recipe_config("reranker", "reranker-eedi.yaml").query_format == trained
