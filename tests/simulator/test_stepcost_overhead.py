"""StepCost's host-overhead terms and separate (unfused) prefills, with exact latencies."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.simulator.latency import ConstantLatency
from spectune.simulator.stepcost import StepCost

LAT = ConstantLatency(base_ms=2.0, per_token_ms=0.1)  # 2 + 0.1 * batch * query


def test_per_sequence_overhead_scales_with_batch():
    cost = StepCost(LAT, overhead_ms=1.0, overhead_per_seq_ms=0.25)
    got = cost.decode_ms(4, np.array([100.0]))[0]
    assert got == pytest.approx(1.0 + 0.25 * 4 + 2.0 + 0.1 * 4)


def test_fused_prefill_pays_marginal_cost_separate_pays_full():
    chunks = [(10, 0), (20, 0)]
    fused = StepCost(LAT, overhead_per_seq_ms=0.5).mixed_ms(2, 50.0, chunks)
    separate = StepCost(LAT, overhead_per_seq_ms=0.5, fused_prefill=False).mixed_ms(2, 50.0, chunks)
    decode = 2.0 + 0.1 * 2
    overhead = 0.5 * (2 + 2)  # two decoding sequences + two chunks
    assert fused == pytest.approx(overhead + decode + (0.1 * 9) + (0.1 * 19))
    assert separate == pytest.approx(overhead + decode + (2.0 + 1.0) + (2.0 + 2.0))
    # without a decode batch the first chunk pays in full either way
    only = StepCost(LAT, fused_prefill=True).mixed_ms(0, 0.0, chunks)
    assert only == pytest.approx((2.0 + 1.0) + 0.1 * 19)


def test_tree_level_queries_incremental_and_refeed():
    from spectune.simulator.api import tree_level_queries

    assert tree_level_queries([3, 3, 2]) == (1, 3, 3)
    assert tree_level_queries([3, 3, 2], "refeed") == (1, 3, 6)
    assert tree_level_queries([1, 1, 1], "refeed") == (1, 1, 1)  # chains commit each draft
    assert tree_level_queries([]) == ()


def test_per_pass_overhead_counts_drafter_passes():
    from spectune.simulator.schema import DrafterSpec, Serving
    from spectune.simulator.stepcost import draft_passes, step_overheads
    from spectune.simulator.tree import Tree

    tree = Tree.from_paths([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]])  # parents: root, 0, 1, 2
    chain = Tree.chain(5)
    assert draft_passes("ngram", chain) == 1  # one lookup yields the whole chain
    assert draft_passes("ngram", tree) == 4  # one lookup per node with children
    assert draft_passes("draft_model", chain) == 5
    assert draft_passes("self", tree) == 3  # one pass per level
    assert draft_passes("ngram", Tree.chain(0)) == 0
    serving = Serving(step_overhead_ms=0.1, step_overhead_per_seq_ms=0.01)
    spec = DrafterSpec(
        name="ng",
        kind="ngram",
        acceptance={"per_position": [0.5]},
        step_overhead_ms=0.2,
        step_overhead_per_seq_ms=0.03,
        step_overhead_per_pass_seq_ms=0.05,
        step_overhead_per_node_seq_ms=0.002,
    )
    per_seq = 0.01 + 0.03 + 0.05 * 4 + 0.002 * 6
    assert step_overheads(serving, spec, tree) == pytest.approx((0.3, per_seq))
    per_seq = 0.01 + 0.03 + 0.05 + 0.002 * 5
    assert step_overheads(serving, spec, chain) == pytest.approx((0.3, per_seq))
    assert step_overheads(serving, spec, Tree.chain(0)) == pytest.approx((0.1, 0.01))
    assert step_overheads(serving, None, tree) == pytest.approx((0.1, 0.01))
