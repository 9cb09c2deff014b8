"""fuse_rerank: how the rerank node combines retrieval and reranker scores."""

import pytest

from mcqa.rag.retrieval import fuse_rerank


def order(scores):
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_none_is_the_reranker_alone():
    assert fuse_rerank([0.9, 0.8, 0.1], [1.0, 5.0, -2.0], None) == [1.0, 5.0, -2.0]


def test_weight_zero_keeps_retrieval_order_and_a_large_weight_follows_the_reranker():
    retrieval, rerank = [0.9, 0.7, 0.5, 0.3], [-1.0, 3.0, 0.5, 2.0]
    assert order(fuse_rerank(retrieval, rerank, 0.0)) == [0, 1, 2, 3]
    assert order(fuse_rerank(retrieval, rerank, 100.0)) == order(rerank)


def test_equal_weights_trade_off_on_standardised_scales():
    # the reranker's scale (x1000) must not matter: only z-scores are added
    retrieval, rerank = [0.60, 0.59, 0.20], [0.0, 1000.0, 500.0]
    fused = fuse_rerank(retrieval, rerank, 1.0)
    assert order(fused) == [1, 0, 2]
    assert fused == pytest.approx(fuse_rerank(retrieval, [r / 1000 for r in rerank], 1.0))


def test_a_flat_list_contributes_nothing_and_mismatched_lengths_are_an_error():
    assert order(fuse_rerank([0.3, 0.2, 0.9], [1.0, 1.0, 1.0], 5.0)) == [2, 0, 1]
    assert fuse_rerank([], [], 1.0) == []
    with pytest.raises(ValueError, match="2 retrieval scores but 3"):
        fuse_rerank([0.1, 0.2], [1, 2, 3], 1.0)
