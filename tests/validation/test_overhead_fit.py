"""Host-overhead fits of the validation's calibration: exact recovery, non-negativity."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from spectune.validation.overhead import fit_line, fit_shapes


def _grid():
    # the calibration's shapes: (batch, passes, nodes) for k = 1, k = 3, a 6-node tree
    shapes = [(4, 1, 1), (16, 1, 1), (1, 3, 3), (4, 3, 3), (16, 3, 3), (4, 3, 6), (16, 3, 6)]
    arr = np.repeat(np.array(shapes), 5, axis=0)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def test_fit_recovers_exact_terms_from_group_medians():
    batch, passes, nodes = _grid()
    rng = np.random.default_rng(0)
    ms = 0.1 + 0.02 * batch + 0.05 * batch * passes + 0.01 * batch * nodes
    # one outlier per group does not move a median of 5
    ms = ms + np.where(np.arange(ms.size) % 5 == 0, rng.uniform(5, 10, ms.size), 0.0)
    f = fit_shapes(batch, passes, nodes, ms)
    got = (f.base_ms, f.per_seq_ms, f.per_pass_seq_ms, f.per_node_seq_ms)
    assert got == pytest.approx((0.1, 0.02, 0.05, 0.01))
    assert f.rmse_ms == pytest.approx(0.0, abs=1e-9)
    assert f.at(8, 2, 4) == pytest.approx(0.1 + 0.02 * 8 + 0.05 * 16 + 0.01 * 32)


def test_fit_keeps_terms_non_negative():
    batch, passes, nodes = _grid()
    # cost falls with passes: that term would be negative, so it is dropped
    ms = 1.0 + 0.3 * batch - 0.01 * batch * passes
    f = fit_shapes(batch, passes, nodes, ms)
    assert min(f.base_ms, f.per_seq_ms, f.per_pass_seq_ms, f.per_node_seq_ms) >= 0.0
    assert f.per_pass_seq_ms == 0.0


def test_one_shape_falls_back_to_a_line():
    batch = np.array([1, 1, 4, 4, 16, 16])
    ms = 0.5 + 0.1 * batch
    f = fit_shapes(batch, np.full(6, 3), np.full(6, 3), ms)
    g = fit_line(batch, ms)
    assert (f.base_ms, f.per_seq_ms, f.per_pass_seq_ms) == pytest.approx(
        (g.base_ms, g.per_seq_ms, 0.0)
    )


def test_calibration_runs_spread_over_repeats_and_resume(tmp_path):
    from types import SimpleNamespace

    from spectune.profiler.live import StepLog
    from spectune.validation.calibration import CalibrationRuns, calibration_rounds

    assert calibration_rounds(1) == [0]
    assert calibration_rounds(2) == [0, 1]
    assert calibration_rounds(9) == [0, 4, 8]
    served = []
    ranked = SimpleNamespace(acceptance=SimpleNamespace(ranked=[0.5]))
    runner = SimpleNamespace(
        rs=SimpleNamespace(drafters={"d": ranked}),
        serve=lambda e, seed: served.append((e.id, seed)) or SimpleNamespace(steps=StepLog()),
    )
    cal = CalibrationRuns(runner, tmp_path, seed=0, key="k1", repeats=5)
    n = len(cal.entries)
    assert cal.total == 3 * n
    for rep in range(5):
        for i in range(7):  # 7 live entries per repeat
            cal.before_run(rep, i, 7)
    # each round ran every calibration entry once, on the calibration seed
    assert {seed for _, seed in served} == {1}
    assert sorted(x for x, _ in served) == sorted([e.id for e in cal.entries] * 3)
    assert cal.done() == cal.total
    # a resumed validation runs nothing again; another key starts over
    CalibrationRuns(runner, tmp_path, seed=0, key="k1", repeats=5).finish()
    assert len(served) == 3 * n
    assert CalibrationRuns(runner, tmp_path, seed=0, key="k2", repeats=5).done() == 0
