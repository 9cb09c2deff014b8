"""Every config shipped in finetune/configs/ loads: a typo in a committed recipe (an unknown key, a value
out of range) would otherwise surface only when a user starts a 10-minute training run.

What a config is expected to say is read from the YAML itself, not from the loaded config: every field
has a default (the agent's embedder is `minilm-l6`, a recipe's query format `subject_correct`), so a
check on the loaded value alone passes for a file that forgot the key."""

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


def written(name: str) -> dict:
    """The YAML as the file says it, no defaults filled in."""
    return read_yaml_mapping(FOLDER / name)


def model_of(name: str) -> str:
    """The model folder a training config's header command writes: its `--out` + /model."""
    out = re.search(r"^# mcqa train [\w-]+ .*--out (\S+)", (FOLDER / name).read_text(), re.MULTILINE)
    assert out, f"{name} should begin with the `mcqa train ... --out` command that uses it"
    return f"{out.group(1)}/model"


def assert_as_written(loaded: dict, raw: dict, where: str) -> None:
    """Every key the YAML writes is a field of the loaded config and holds the written value (sections
    and sub-configs such as `lora` compared key by key)."""
    for key, value in raw.items():
        assert key in loaded, f"{where}: {key} is written but is not a field"
        if isinstance(value, dict) and isinstance(loaded[key], dict):
            assert_as_written(loaded[key], value, f"{where}: {key}")
        else:
            assert loaded[key] == value, f"{where}: {key} is {value!r} in the file, {loaded[key]!r} loaded"


def test_the_configs_folder_is_found():
    assert len(CONFIGS) >= 5, f"expected the shipped configs in {FOLDER}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_committed_config_loads_with_the_command_its_header_gives(path):
    head = "\n".join(path.read_text().splitlines()[:3])
    command = re.search(r"^# mcqa (train ([\w-]+)|eval run) ", head, re.MULTILINE)
    assert command, f"{path.name} should begin with the command that uses it"
    recipe = command.group(2)
    raw = written(path.name)
    if recipe is None:
        assert raw.get("agent"), f"{path.name}: an agent config sets agent options"
        config = load_config(path)
    else:
        config = recipe_config(recipe, path.name)
    assert_as_written(config.model_dump(mode="json"), raw, path.name)


def test_agent_configs_name_the_models_their_recipes_train():
    """The trained models an agent config (or the reranker recipe) uses are named in the file, at the
    folder the recipe's own header writes them to: the default embedder would load without complaint."""
    embedder, mpnet = model_of("embedder-eedi.yaml"), model_of("embedder-eedi-mpnet-minilm-mined.yaml")
    tuned, best = written("agent-eedi-tuned.yaml")["agent"], written("agent-eedi-best.yaml")["agent"]
    assert tuned.get("embedder") == embedder, "agent-eedi-tuned.yaml names the tuned embedder"
    assert best.get("embedder") == embedder and best.get("embedders") == [mpnet], "agent-eedi-best.yaml"
    reranker = written("reranker-eedi.yaml")
    assert reranker.get("base") == embedder and reranker.get("retriever") == embedder
    # MAP's classifier was fitted on `base`'s vectors; the agent config leaves its embedder to the default
    classifier, agent = written("classifier-map.yaml"), written("agent-map-classifier.yaml")["agent"]
    assert agent.get("classifier") == model_of("classifier-map.yaml")
    assert classifier.get("base"), "classifier-map.yaml names the embedder it is fitted on"
    assert load_config(FOLDER / "agent-map-classifier.yaml").agent.for_dataset("map").embedder == classifier["base"]
    # MAP's fused config: the seqclass model trained on fit; its weights chosen with the one trained on fit-inner
    fusion, best = written("map-fusion.yaml"), written("agent-map-best.yaml")["agent"]
    assert best.get("seqclass") == fusion.get("final_seqclass") == model_of("seqclass-map.yaml")
    assert fusion.get("seqclass") == model_of("seqclass-map-inner.yaml")
    assert written("seqclass-map-inner.yaml").get("fit_split") == "fit-inner"


def test_the_agent_and_reranker_query_in_the_format_their_embedder_was_trained_on():
    trained = written("embedder-eedi.yaml").get("query_format")
    assert trained, "embedder-eedi.yaml writes the query format it trains on"
    assert recipe_config("embedder", "embedder-eedi.yaml").query_format == trained
    for name in ("agent-eedi-tuned.yaml", "agent-eedi-best.yaml"):
        assert written(name)["agent"].get("query_format") == trained, name
        assert load_config(FOLDER / name).agent.query_format == trained
    recipes = [("embedder", p.name) for p in sorted(FOLDER.glob("embedder-eedi-*.yaml"))]
    for recipe, name in [*recipes, ("reranker", "reranker-eedi.yaml")]:
        assert written(name).get("query_format") == trained, name
        assert recipe_config(recipe, name).query_format == trained
