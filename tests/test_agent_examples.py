"""Few-shot examples from another source (agent.examples): another dataset's split, a user's file; the
item being solved never shown as its own example; bad sources refused up front. Real MiniLM, real
FAISS, real files; no LLM (the retrieve_examples node needs only the embedder)."""

import csv
from itertools import islice

import pytest

from mcqa.agent.graph import Agent
from mcqa.agent.resources import Resources
from mcqa.config import load_config
from mcqa.datasets import load_split
from mcqa.rag import Embedder, ExampleStore
from mcqa.rag.store import same_question
from mcqa.solve import build_solver

N_CODE = 40


def config(**agent):
    return load_config(**{f"agent.{k}": v for k, v in {"few_shot": 3, **agent}.items()})


@pytest.fixture(scope="module")
def code_root(tmp_path_factory, data_root):
    """A data folder holding the first N_CODE rows of CodeMMLU's train file (a store of it encodes in
    seconds); the cache points into a temporary folder for the whole module."""
    source = data_root / "codemmlu_fpt" / "b6_train_data.csv"
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, fields = list(islice(reader, N_CODE)), reader.fieldnames
    root = tmp_path_factory.mktemp("data")
    (root / "codemmlu_fpt").mkdir()
    with (root / "codemmlu_fpt" / source.name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCQA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield root


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def arc_items(data_root):
    return load_split("arc_challenge", "test", data_root).items


def resources_for(cfg, dataset, root, embedder, split="test") -> Resources:
    resources = Resources(cfg, dataset, root, split=split)
    resources.__dict__["embedder"] = embedder  # one loaded MiniLM for the module
    return resources


def retrieve(resources: Resources, items) -> dict[str, list[str]]:
    """The retrieve_examples node's update: item id -> the ids of the examples it would show."""
    agent = Agent(resources.agent, resources, ["answer"])
    update = agent.retrieve_examples({"items": [it.model_dump() for it in items]})
    return {item_id: [ex["id"] for ex in examples] for item_id, examples in update["examples"].items()}


def copy_of(item, new_id):
    """The same question and choices under another id, written differently: case, spacing, choice order."""
    return item.model_copy(
        update={
            "id": new_id,
            "question": "  " + item.question.upper().replace(" ", "   ") + "\n",
            "choices": [c.upper() for c in reversed(item.choices)],
        }
    )


def test_examples_from_another_dataset_never_show_the_item_itself(code_root, embedder, arc_items):
    resources = resources_for(config(examples="codemmlu_fpt:train"), "arc_challenge", code_root, embedder)
    store = resources.examples
    code = load_split("codemmlu_fpt", "train", code_root).items
    assert [i.id for i in store.items] == [i.id for i in code if i.answer is not None] and len(store) > 30
    assert store.source["dataset"] == "codemmlu_fpt" and store.source["split"] == "train"

    stored = store.items[7]
    near = stored.model_copy(update={"id": "near", "choices": [*stored.choices[:-1], "none of these"]})
    assert store.search([near], 1)[0][0].id == stored.id  # a different item: its neighbour is shown
    copy = copy_of(stored, "arc-copy")
    assert same_question(copy) == same_question(stored)
    shown = retrieve(resources, [*arc_items[:2], copy])
    assert set(shown) == {arc_items[0].id, arc_items[1].id, "arc-copy"}
    assert all(len(ids) == 3 for ids in shown.values())  # still k examples each
    assert stored.id not in shown["arc-copy"]
    by_id = {i.id: i for i in store.items}
    assert all(same_question(by_id[i]) != same_question(copy) for i in shown["arc-copy"])


def test_many_copies_in_the_store_still_leave_k_examples(code_root, embedder):
    items = load_split("codemmlu_fpt", "train", code_root).items
    query = items[0]
    copies = [copy_of(query, f"copy-{n}") for n in range(12)]  # more than the first window of k + 4 hits
    store = ExampleStore.build([*copies, *items[1:]], embedder)
    found = store.search([query], 3)[0]
    assert len(found) == 3 and not {i.id for i in found} & {query.id, *(c.id for c in copies)}


def test_examples_from_a_users_csv_with_a_column_mapping(code_root, embedder, arc_items, tmp_path):
    path = tmp_path / "my solved items.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["qid", "Question", "Opt1", "Opt2", "Opt3", "Opt4", "Correct"])
        for item in arc_items[:8]:  # the answer as the text of the right choice
            writer.writerow([f"mine-{item.id}", item.question, *item.choices, item.choice(item.answer)])
        writer.writerow(["mine-unlabelled", "Which is a mammal?", "shark", "whale", "trout", "eel", ""])
    cfg = config(
        examples=str(path),
        examples_columns=["id=qid", "question=Question", "choices=Opt1,Opt2,Opt3,Opt4", "answer=Correct"],
    )
    resources = resources_for(cfg, "arc_challenge", code_root, embedder)
    store = resources.examples
    assert [i.id for i in store.items] == [f"mine-{i.id}" for i in arc_items[:8]]  # the unlabelled row left out
    assert [i.answer for i in store.items] == [i.answer for i in arc_items[:8]]
    assert store.source["file"] == str(path.resolve())
    assert store.folder.name.startswith("examples-file-my_solved_items-")
    assert resources_for(cfg, "arc_challenge", code_root, embedder).examples.folder == store.folder  # cached

    shown = retrieve(resources, arc_items[:3])  # each of them is in the file, under another id
    for item in arc_items[:3]:
        assert len(shown[item.id]) == 3 and f"mine-{item.id}" not in shown[item.id]


@pytest.mark.parametrize(
    "examples, columns, expected",
    [
        ("nope:train", None, ["unknown dataset 'nope'", "codemmlu_fpt", "arc_challenge"]),
        ("arc_challenge:train", None, ["arc_challenge has no split 'train'", "it has test"]),
        ("codemmlu_fpt", None, ["expected DATASET:SPLIT"]),
        ("codemmlu_fpt:train", ["question=Q"], ["examples_columns", "file of your own"]),
        ("missing.csv", ["questio=Q"], ["examples_columns", "questio", "fields: id, question"]),
    ],
)
def test_a_bad_source_is_named_with_what_exists(code_root, examples, columns, expected):
    resources = Resources(config(examples=examples, examples_columns=columns), "arc_challenge", code_root, split="test")
    with pytest.raises(ValueError) as raised:
        resources.check(["retrieve_examples"])
    assert all(part in str(raised.value) for part in expected), str(raised.value)


def test_a_missing_file_fails_before_a_run_starts(code_root, tmp_path):
    (tmp_path / "solved.csv").write_text("question,choices,answer\n")
    cfg = config(examples=str(tmp_path / "slved.csv"))
    with pytest.raises(ValueError, match=r"no file .*slved\.csv; .* holds solved\.csv"):
        build_solver(cfg, dataset="arc_challenge", split="test", data_root=code_root)  # no model is loaded
    with pytest.raises(ValueError, match="there is no folder"):
        Resources(config(examples=str(tmp_path / "nowhere" / "x.csv")), "arc_challenge", code_root).check(
            ["retrieve_examples"]
        )


def test_a_file_without_answers_is_refused(code_root, embedder, tmp_path):
    path = tmp_path / "unlabelled.jsonl"
    path.write_text('{"question": "2 + 2?", "choices": ["3", "4"]}\n')
    with pytest.raises(ValueError, match="no item with an answer"):
        _ = resources_for(config(examples=str(path)), "arc_challenge", code_root, embedder).examples


def test_the_default_source_is_still_the_solved_datasets_split(code_root, embedder):
    resources = resources_for(config(), "codemmlu_fpt", code_root, embedder, split="validation")
    assert str(resources.examples_source) == "codemmlu_fpt:fit" and resources.examples_split == "fit"
    named = resources_for(
        config(examples="codemmlu_fpt:train"), "codemmlu_fpt", code_root, embedder, split="validation"
    )
    assert str(named.examples_source) == "codemmlu_fpt:fit"  # validation's own answers are never examples


def test_nearest_last_shows_the_same_examples_reversed(code_root, embedder, arc_items):
    first = retrieve(
        resources_for(config(examples="codemmlu_fpt:train"), "arc_challenge", code_root, embedder), arc_items[:3]
    )
    last = retrieve(
        resources_for(
            config(examples="codemmlu_fpt:train", few_shot_order="nearest_last"), "arc_challenge", code_root, embedder
        ),
        arc_items[:3],
    )
    assert all(len(ids) == 3 for ids in first.values())
    assert last == {item_id: ids[::-1] for item_id, ids in first.items()}
