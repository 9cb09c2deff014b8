"""Every config shipped in finetune/configs/ loads: a typo in a committed recipe (an unknown key, a value
out of range) would otherwise surface only when a user starts a 10-minute training run."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import mcqa.cli  # noqa: F401  (mcqa.finetune.cli is imported through it)
from mcqa.config import load_config, read_yaml_mapping
from mcqa.finetune.cli import RECIPES
from mcqa.finetune.common import load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "finetune" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_committed_config_loads_with_the_command_its_first_line_gives(path):
    head = "\n".join(path.read_text().splitlines()[:3])
    command = re.search(r"^# mcqa (train (\w+)|eval run) ", head, re.MULTILINE)
    assert command, f"{path.name} should begin with the command that uses it"
    recipe = command.group(2)
    if recipe is None:
        config = load_config(path)
        assert config.agent.embedder, "an agent config names its embedder"
    else:
        config = load_train_config(importlib.import_module(RECIPES[recipe]).Config, path)
        written = read_yaml_mapping(path)
        assert all(config.model_dump()[k] == v for k, v in written.items() if not isinstance(v, dict))


def test_the_agent_config_queries_in_the_format_its_embedder_was_trained_on():
    folder = CONFIGS[0].parent
    agent = load_config(folder / "agent-eedi-tuned.yaml").agent
    embedder = load_train_config(importlib.import_module(RECIPES["embedder"]).Config, folder / "embedder-eedi.yaml")
    assert agent.query_format == embedder.query_format
