"""Prompt-lookup drafting: matching rules for chains and ranked candidates for trees."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.profiler.native.ngram import NgramProposer


def a(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def test_chain_continues_most_recent_occurrence():
    p = NgramProposer(1, 3)
    # suffix "1 2" occurs at 0 (followed by 3 4) and at 4 (followed by 5 6): most recent wins.
    seq = a(1, 2, 3, 4, 1, 2, 5, 6, 9, 1, 2)
    assert p.propose(seq, 2).tolist() == [5, 6]
    # Past the end of the sequence the continuation repeats with period 5.
    assert p.propose(seq, 7).tolist() == [5, 6, 9, 1, 2, 5, 6]


def test_longest_ngram_wins_over_more_recent_shorter_match():
    p = NgramProposer(1, 3)
    # "7 1 2" occurs once early (-> 3); "1 2" alone occurs later (-> 5).
    seq = a(7, 1, 2, 3, 0, 1, 2, 5, 7, 1, 2)
    assert p.propose(seq, 1).tolist() == [3]
    assert NgramProposer(1, 2).propose(seq, 1).tolist() == [5]


def test_no_match_and_bounds():
    p = NgramProposer(2, 3)
    assert p.propose(a(1, 2, 3, 4), 3).size == 0  # no earlier bigram "3 4"
    assert p.propose(a(5), 3).size == 0
    assert p.propose(a(1, 1, 1), 0).size == 0
    assert NgramProposer(1, 1).propose(a(4, 4), 3).tolist() == [4, 4, 4]  # periodic
    with pytest.raises(ValueError):
        NgramProposer(3, 2)
    with pytest.raises(ValueError):
        NgramProposer(0, 2)


def test_ranked_candidates_by_frequency_then_recency():
    p = NgramProposer(1, 1)
    # after "1": 2, 3, 2, 4, 3 -> counts 2:2, 3:2, 4:1; 3 is more recent than 2 -> 3, 2, 4
    seq = a(1, 2, 1, 3, 1, 2, 1, 4, 1, 3, 1)
    assert p.ranked_candidates(seq, 5) == [3, 2, 4]
    assert p.ranked_candidates(seq, 2) == [3, 2]
    assert p.ranked_candidates(a(1, 2), 3) == []


def test_tree_fill_and_absent_nodes():
    p = NgramProposer(1, 1)
    seq = a(1, 2, 1, 3, 1, 2, 1)  # after 1: {2: 2, 3: 1}; after 2: {1}; after 3: {1}
    # nodes: 0=[0], 1=[1], 2=[2] (no third candidate), 3=[0,0], 4=[0,1] (none), 5=[2,0]
    parents = (-1, -1, -1, 0, 0, 2)
    ranks = (0, 1, 2, 0, 1, 0)
    tokens, present = p.propose_tree(seq, parents, ranks)
    assert present.tolist() == [True, True, False, True, False, False]
    assert tokens[:2].tolist() == [2, 3] and tokens[3] == 1


def test_batched_padding():
    p = NgramProposer(1, 2)
    drafts, num = p.propose_batch([a(1, 2, 1), a(5, 6), a(3, 3, 3, 3)], 2)
    assert num.tolist() == [2, 0, 2]
    assert drafts.tolist() == [[2, 1], [0, 0], [3, 3]]  # "3 3 3 3" repeats
    tokens, present = p.propose_tree_batch([a(1, 2, 1), a(5, 6)], (-1, 0), (0, 0))
    assert present.tolist() == [[True, True], [False, False]]
    assert tokens[0].tolist() == [2, 1]
