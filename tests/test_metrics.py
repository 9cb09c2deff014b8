"""Ranking metrics against hand-computed cases."""

import math

import pytest

from mcqa.eval.metrics import average_precision_at_k, map_at_k, recall_at_k


@pytest.mark.parametrize(
    "ranked,relevant,k,expected",
    [
        (["7", "3", "9"], {"7"}, 25, 1.0),  # first place
        (["1", "2", "7"], {"7"}, 25, 1 / 3),  # third place
        (["1", "2", "3"], {"7"}, 25, 0.0),  # missing
        (["1", "2", "3", "7"], {"7"}, 3, 0.0),  # beyond k
        (["7", "7", "3"], {"3"}, 3, 1 / 3),  # a duplicate wastes its slot (Kaggle's apk)
        (["3", "3", "1"], {"3"}, 3, 1.0),  # and never scores twice
        (["a", "x", "b"], {"a", "b"}, 3, (1 / 1 + 2 / 3) / 2),  # two relevant labels
        ([], {"7"}, 25, 0.0),
    ],
)
def test_average_precision(ranked, relevant, k, expected):
    assert average_precision_at_k(ranked, relevant, k) == pytest.approx(expected)


def test_map_and_recall_over_rows():
    rankings = [["7", "3"], ["1", "7"], ["1", "2"]]
    relevants = [{"7"}, {"7"}, {"7"}]
    assert map_at_k(rankings, relevants, 25) == pytest.approx((1 + 0.5 + 0) / 3)
    assert map_at_k(rankings, relevants, 1) == pytest.approx(1 / 3)
    assert recall_at_k(rankings, relevants, 25) == pytest.approx(2 / 3)
    # the MAP competition's MAP@3 on its sample-submission shape
    assert map_at_k(
        [["True_Correct:NA", "False_Neither:NA", "False_Misconception:Incomplete"]], [{"False_Neither:NA"}], 3
    ) == pytest.approx(0.5)
    assert math.isnan(map_at_k([], [], 25))
    with pytest.raises(ValueError):
        map_at_k([["1"]], [], 25)
