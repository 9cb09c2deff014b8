"""Every shared dataset through its adapter, and bad input written by the tests themselves."""

import json

import pytest

from mcqa.datasets import DATASETS, Columns, DatasetError, load_file, load_misconceptions, load_split
from mcqa.datasets.base import SkipRow
from mcqa.datasets.benchmarks import parse_mathqa_options
from mcqa.datasets.codemmlu import normalise_label, parse_choices


@pytest.mark.parametrize("name,split", [(n, s) for n, spec in DATASETS.items() for s in spec.splits])
def test_every_shared_split_loads(data_root, name, split):
    loaded = load_split(name, split, data_root)
    assert len(loaded) > 0
    ids = [item.id for item in loaded.items]
    assert len(ids) == len(set(ids)), "ids must be unique within a split"
    # a split is either fully labelled (train, benchmarks) or an unlabelled test file
    labelled = sum(item.answer is not None for item in loaded.items)
    assert labelled in (0, len(loaded)) or name == "map"


def test_eedi_train_carries_misconceptions(data_root):
    items = load_split("eedi", "train", data_root).items
    labelled = [(it, letter) for it in items for letter in it.misconceptions]
    assert len(labelled) > 2000
    for item, letter in labelled:
        assert letter != item.answer, "the correct option never has a misconception"
    catalogue = {m.id for m in load_misconceptions("eedi", data_root)}
    assert len(catalogue) == 2587
    assert all(m in catalogue for it, x in labelled for m in it.misconceptions[x])


def test_map_rebuilds_choices_and_correct_answer(data_root):
    items = load_split("map", "train", data_root).items
    by_question = {}
    for item in items:
        by_question.setdefault(item.metadata["question_id"], set()).add(tuple(item.choices))
    assert all(len(v) == 1 for v in by_question.values()), "one lettering per question"
    for item in items[:2000]:
        category = item.metadata["category"]
        assert (item.chosen == item.answer) == category.startswith("True_")
        assert item.metadata["label"].startswith(category + ":")
        if not category.endswith("Misconception"):
            assert item.misconceptions == {}
    assert len(load_misconceptions("map", data_root)) == 35


def test_codemmlu_messy_labels_are_normalised_or_counted(data_root):
    loaded = load_split("codemmlu_fpt", "train", data_root)
    assert loaded.n_skipped > 0
    assert set(loaded.skipped) <= {
        "fewer than 2 choices",
        "answer letter beyond the choices",
        "no answer label",
        "unreadable answer label",
    }
    assert all(e.startswith("b6_train_data.csv row ") for e in loaded.examples)
    assert all(item.answer in item.letters for item in loaded.items)
    test = load_split("codemmlu_fpt", "test", data_root)
    assert len(test) == 1253 and all(item.answer is None for item in test.items)


@pytest.mark.parametrize("raw,expected", [("C", "C"), ("ANSWER: B", "B"), (" d ", "D"), ("", None), ("(A)", "A")])
def test_codemmlu_label_forms(raw, expected):
    assert normalise_label(raw) == expected


def test_choices_literal_is_never_evaluated():
    with pytest.raises(SkipRow):
        parse_choices("__import__('os').system('echo pwned')")
    assert parse_choices("['a', \"b\"]") == ["a", "b"]


def test_mathqa_options_keep_inner_commas():
    assert parse_mathqa_options("a ) rs . 1 , 200 , b ) 5 , c ) 6 , d ) 7 , e ) 8")[0] == "rs . 1 , 200"
    assert parse_mathqa_options("['a ) 1 cm', 'b ) 2 cm']") == ["1 cm", "2 cm"]


def test_missing_column_is_one_clear_error(tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("QuestionId,QuestionText\n1,hello\n")
    with pytest.raises(DatasetError, match=r"train\.csv: missing column"):
        DATASETS["eedi"].loader(tmp_path, "train")


def test_missing_file_names_the_setting(tmp_path):
    with pytest.raises(DatasetError, match="MCQA_DATA_DIR"):
        load_split("mmlu_stem", "test", tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match="known: eedi"):
        load_split("nope", "test")
    with pytest.raises(DatasetError, match="unknown split 'train'"):
        load_split("arc_challenge", "train")


def test_bad_rows_are_skipped_and_counted_not_fatal(tmp_path):
    rows = [
        {"query": "Question: ok?", "choices": ["a", "b"], "gold": 1},
        {"query": "Question: gold out of range", "choices": ["a", "b"], "gold": 5},
        {"query": "Question: one choice", "choices": ["a"], "gold": 0},
        {"query": "Question: fine too", "choices": ["x", "y", "z"], "gold": "2"},
    ]
    folder = tmp_path / "arc_challenge"
    folder.mkdir()
    (folder / "arc_challenge.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = load_split("arc_challenge", "test", tmp_path)
    assert [it.answer for it in loaded.items] == ["B", "C"]
    assert loaded.skipped == {"answer index beyond the choices": 1, "invalid choices": 1}
    assert loaded.examples[0].startswith("arc_challenge.jsonl row 2: answer index beyond the choices")


def test_broken_json_line_is_a_counted_skip_with_its_line(tmp_path):
    folder = tmp_path / "mmlu_stem"
    folder.mkdir()
    good = '{"question": "q", "choices": ["a", "b"], "answer": 0}\n'
    (folder / "test.jsonl").write_text(good + '{"question": \n' + good)
    loaded = load_split("mmlu_stem", "test", tmp_path)
    assert [it.id for it in loaded.items] == ["1", "3"]  # the rows after it keep their numbers
    assert loaded.skipped == {"invalid JSON": 1}
    assert loaded.examples == ["test.jsonl row 2: invalid JSON (line 2: Expecting value)"]
    (folder / "test.jsonl").write_text('{"question": \n')
    with pytest.raises(DatasetError, match=r"test\.jsonl: no record is a JSON object .*line 1: invalid JSON"):
        load_split("mmlu_stem", "test", tmp_path)


def test_generic_csv_with_column_mapping(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "qid,Q,A,B,C,Gold\n"
        "q1,What is 2+2?,3,4,5,B\n"
        "q2,Capital of France?,Paris,Rome,Oslo,Paris\n"
        "q3,Index answer,x,y,z,2\n"
        "q4,Bad answer,x,y,z,banana\n"
    )
    columns = Columns.parse(["id=qid", "question=Q", "choices=A,B,C", "answer=Gold"])
    loaded = load_file(path, columns)
    assert [(it.id, it.answer) for it in loaded.items] == [("q1", "B"), ("q2", "A"), ("q3", "C")]
    assert loaded.skipped == {"answer is neither a letter, an index nor a choice": 1}


def test_generic_jsonl_list_column_and_parquet(tmp_path):
    from datasets import Dataset

    records = [
        {"question": "q1", "choices": ["a", "b"], "answer": "A"},
        {"question": "q2", "choices": "['c', 'd']", "answer": 1},
    ]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    assert [it.choices for it in load_file(jsonl).items] == [["a", "b"], ["c", "d"]]
    parquet = tmp_path / "mine.parquet"
    Dataset.from_list([{"question": "p", "choices": ["x", "y"], "answer": "B"}]).to_parquet(str(parquet))
    assert load_file(parquet).items[0].answer == "B"


def test_generic_bad_mapping_is_a_clear_error(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("question,opts\nq,\"['a','b']\"\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['choices'\]"):
        load_file(path)
    with pytest.raises(ValueError, match="field=column"):
        Columns.parse(["question"])
