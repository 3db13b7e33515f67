"""LatencyModel: exact on grid points, monotone everywhere, extrapolation flagged, cv error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator.errors import ExtrapolationError, InputError
from spectune.simulator.latency import ConstantLatency, LatencyModel
from spectune.simulator.latency_grid import fit_parametric, make_monotone
from spectune.simulator.roofline import write_profile
from spectune.simulator.schema import LatencyProfile

BATCHES = [1, 2, 4, 8, 16, 32, 64]
QUERIES = [1, 2, 4, 8, 16, 64, 256]
CONTEXTS = [0, 128, 512, 2048, 8192]


def multilinear(b: float, q: float, c: float) -> float:
    """A latency that multilinear interpolation must reproduce exactly."""
    return 5.0 + 0.01 * b * q + 2e-5 * b * c + 1e-7 * b * q * c + 0.002 * b


def smooth(b: float, q: float, c: float) -> float:
    """Curved but smooth and monotone: flat-then-linear in tokens, like a GPU."""
    t = b * q
    return 4.0 + math.sqrt(16.0 + (0.02 * t) ** 2) + 3e-5 * b * c


def make_profile(fn, batches=BATCHES, queries=QUERIES, contexts=CONTEXTS, keep=None):
    pts = []
    for b in batches:
        for q in queries:
            for c in contexts:
                if keep is not None and not keep(b, q, c):
                    continue
                v = float(fn(b, q, c))
                pts.append(
                    dict(
                        batch=b,
                        query_tokens=q,
                        context_tokens=c,
                        latency_ms=dict(min=v, p50=v, p90=v, n=1),
                    )
                )
    return LatencyProfile.model_validate(
        dict(
            schema="spectune/latency/v1",
            device=dict(name="test", kind="cpu", dtype="bfloat16"),
            model=dict(name="m", params=10, layers=1, hidden=8, heads=2, kv_heads=1, vocab=10),
            provenance=dict(kind="measured", how="synthetic"),
            points=pts,
        )
    )


@pytest.fixture(scope="module")
def smooth_model() -> LatencyModel:
    return LatencyModel.from_profile(make_profile(smooth))


def test_exact_on_grid_points() -> None:
    prof = make_profile(smooth)
    m = LatencyModel.from_profile(prof)
    for p in prof.points:
        got = m.forward_ms(p.batch, p.query_tokens, p.context_tokens)
        assert got == pytest.approx(p.latency_ms.p50, rel=1e-12)
    assert m.extrapolated == 0
    assert m.monotone_adjust_pct == 0.0


def test_multilinear_function_reproduced_between_grid_points() -> None:
    m = LatencyModel.from_profile(make_profile(multilinear))
    rng = np.random.default_rng(0)
    for _ in range(300):
        b = int(rng.integers(1, 65))
        q = int(rng.integers(1, 257))
        c = float(rng.uniform(0, 8192))
        assert m.forward_ms(b, q, c) == pytest.approx(multilinear(b, q, c), rel=1e-9)
    assert m.extrapolated == 0


def test_p50_or_min_statistic() -> None:
    prof = make_profile(smooth)
    pts = [
        p.model_copy(
            update={"latency_ms": p.latency_ms.model_copy(update={"min": p.latency_ms.min / 2})}
        )
        for p in prof.points
    ]
    prof = prof.model_copy(update={"points": pts})
    p0 = prof.points[0]
    assert LatencyModel.from_profile(prof).forward_ms(
        p0.batch, p0.query_tokens, 0
    ) == pytest.approx(p0.latency_ms.p50)
    assert LatencyModel.from_profile(prof, stat="min").forward_ms(
        p0.batch, p0.query_tokens, 0
    ) == pytest.approx(p0.latency_ms.min)


def noisy_profile(seed: int = 1, **grid) -> LatencyProfile:
    rng = np.random.default_rng(seed)
    noise = {}

    def fn(b, q, c):
        key = (b, q, c)
        if key not in noise:
            noise[key] = float(rng.uniform(0.8, 1.2))
        return smooth(b, q, c) * noise[key]

    return make_profile(fn, **grid)


MODELS = {
    "noisy": LatencyModel.from_profile(noisy_profile()),
    # a grid that starts above every axis' natural minimum, with a pruned corner
    "noisy-offset": LatencyModel.from_profile(
        noisy_profile(
            seed=7,
            batches=[2, 4, 8, 32],
            queries=[2, 3, 16, 64],
            contexts=[128, 1024, 4096],
            keep=lambda b, q, c: b * q <= 256,
        )
    ),
}


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(sorted(MODELS)),
    b=st.integers(1, 200),
    q=st.integers(1, 600),
    c=st.floats(0, 20000),
    axis=st.sampled_from([0, 1, 2]),
    step=st.floats(0.0, 3.0),
)
def test_monotone_in_every_axis_even_off_grid(name, b, q, c, axis, step) -> None:
    m = MODELS[name]
    x = [b, q, c]
    y = list(x)
    y[axis] = y[axis] * (1 + step) + 1
    if axis < 2:
        y[axis] = round(y[axis])
    lo = m.forward_ms(*x)
    hi = m.forward_ms(*y)
    assert hi >= lo - 1e-9 * lo, (x, y, lo, hi)
    assert lo > 0


def test_noisy_non_monotone_input_is_made_monotone() -> None:
    prof = noisy_profile(seed=3)
    m = LatencyModel.from_profile(prof)
    raw = np.array([p.latency_ms.p50 for p in prof.points]).reshape(
        len(BATCHES), len(QUERIES), len(CONTEXTS)
    )
    # the raw data really is non-monotone somewhere
    assert any((np.diff(raw, axis=a) < 0).any() for a in range(3))
    for a in range(3):
        assert (np.diff(m.grid, axis=a) >= -1e-12).all()
    assert m.monotone_adjust_pct > 0
    # the monotone grid stays within the data's range (mean of two envelopes)
    assert m.grid.min() >= raw.min() - 1e-9 and m.grid.max() <= raw.max() + 1e-9


def test_make_monotone_identity_on_monotone_and_fixes_a_dip() -> None:
    g = np.cumsum(np.cumsum(np.ones((3, 4, 5)), axis=0), axis=2)
    assert np.array_equal(make_monotone(g), g)
    d = np.array([1.0, 3.0, 2.0, 4.0])
    out = make_monotone(d)
    assert (np.diff(out) >= 0).all()
    assert out[0] == 1.0 and out[-1] == 4.0


def test_extrapolation_counted_linear_and_worst_kept(smooth_model: LatencyModel) -> None:
    m = LatencyModel.from_profile(make_profile(multilinear))
    assert m.extrapolated == 0
    # beyond the batch axis: linear in tokens, not flat
    v = m.forward_ms(128, 1, 512)
    assert v == pytest.approx(multilinear(128, 1, 512), rel=1e-9)
    assert m.extrapolated == 1
    # beyond the context axis
    assert m.forward_ms(4, 4, 20000) == pytest.approx(multilinear(4, 4, 20000), rel=1e-9)
    # beyond the query axis, far: becomes the worst
    assert m.forward_ms(1, 4096, 0) == pytest.approx(multilinear(1, 4096, 0), rel=1e-9)
    assert m.extrapolated == 3
    assert m.worst_extrapolation == (1, 4096, 0)
    rep = m.extrapolation_report()
    assert rep["extrapolated_calls"] == 3
    assert rep["worst"] == {"batch": 1, "query_tokens": 4096, "context_tokens": 0}
    # a milder one does not replace the worst
    m.forward_ms(65, 1, 0)
    assert m.worst_extrapolation == (1, 4096, 0)


def test_below_grid_context_flagged_and_positive() -> None:
    m = LatencyModel.from_profile(make_profile(smooth, contexts=[128, 512, 2048]))
    v0 = m.forward_ms(1, 1, 0)
    assert 0 < v0 <= m.forward_ms(1, 1, 128)
    assert m.extrapolated == 1


def test_strict_mode_raises() -> None:
    m = LatencyModel.from_profile(make_profile(smooth), source="prof.yaml", strict=True)
    m.forward_ms(64, 256, 8192)  # corner of the grid: fine
    with pytest.raises(ExtrapolationError, match=r"prof\.yaml.*batch=65"):
        m.forward_ms(65, 1, 0)
    with pytest.raises(ExtrapolationError, match="context_tokens=9000"):
        m.forward_ms(1, 1, 9000)


def test_pruned_grid_filled_and_flagged() -> None:
    # batch x query capped, as in roofline profiles: the missing corner is filled and flagged
    prof = make_profile(multilinear, keep=lambda b, q, c: b * q <= 256)
    m = LatencyModel.from_profile(prof)
    assert m.forward_ms(2, 64, 512) == pytest.approx(multilinear(2, 64, 512), rel=1e-9)
    assert m.extrapolated == 0
    v = m.forward_ms(64, 256, 512)  # a pruned cell
    assert m.extrapolated == 1
    # the parametric fill is exact for this family (its basis spans it)
    assert v == pytest.approx(multilinear(64, 256, 512), rel=1e-6)


def test_fill_of_interior_hole_uses_neighbours() -> None:
    prof = make_profile(multilinear, keep=lambda b, q, c: not (b == 4 and q == 8))
    m = LatencyModel.from_profile(prof)
    assert m.forward_ms(4, 8, 512) == pytest.approx(multilinear(4, 8, 512), rel=1e-9)
    assert m.extrapolated == 1  # touches unmeasured cells


def test_cv_error_small_on_smooth_and_larger_on_noisy(smooth_model: LatencyModel) -> None:
    assert 0 <= smooth_model.cv_error_pct < 2.0
    assert smooth_model.cv_points > 0.5 * len(BATCHES) * len(QUERIES) * len(CONTEXTS)
    assert smooth_model.cv_max_error_pct >= smooth_model.cv_error_pct
    exact = LatencyModel.from_profile(make_profile(multilinear))
    assert exact.cv_error_pct < 1e-9
    noisy = MODELS["noisy"]
    assert noisy.cv_error_pct > 3.0 * smooth_model.cv_error_pct
    params = smooth_model.fit_params()
    assert "leave-one-out" in params["cv_method"]


def test_cv_error_nan_without_interior_points() -> None:
    m = LatencyModel.from_profile(
        make_profile(smooth, batches=[1, 2], queries=[1, 2], contexts=[0, 1])
    )
    assert math.isnan(m.cv_error_pct) and m.cv_points == 0


def test_single_batch_axis_trades_batch_for_query_tokens() -> None:
    m = LatencyModel.from_profile(make_profile(smooth, batches=[1]))
    # batch 4 x query 16 = 64 tokens, priced like batch 1 x query 64 at the same context
    assert m.forward_ms(4, 16, 0) == pytest.approx(m.forward_ms(1, 64, 0))
    assert m.extrapolated == 2 - 1  # only the batch-4 query is off the grid


def test_single_context_is_flat_and_flagged() -> None:
    m = LatencyModel.from_profile(make_profile(smooth, contexts=[512]))
    assert m.forward_ms(2, 2, 512) == pytest.approx(smooth(2, 2, 512))
    assert m.extrapolated == 0
    assert m.forward_ms(2, 2, 4096) == pytest.approx(smooth(2, 2, 512))
    assert m.extrapolated == 1


def test_bad_queries_raise() -> None:
    m = LatencyModel.from_profile(make_profile(smooth))
    with pytest.raises(InputError, match="batch and query_tokens must be >= 1"):
        m.forward_ms(0, 1, 0)


def test_from_path_roundtrip_and_missing_file(tmp_path) -> None:
    prof = make_profile(smooth)
    path = tmp_path / "p.yaml"
    write_profile(prof, path)
    m = LatencyModel.from_path(path)
    assert m.forward_ms(8, 8, 512) == pytest.approx(smooth(8, 8, 512))
    assert str(path) in repr(m)
    with pytest.raises(InputError, match="file not found"):
        LatencyModel.from_path(tmp_path / "nope.yaml")


def test_fit_parametric_is_non_negative() -> None:
    rng = np.random.default_rng(0)
    b = rng.integers(1, 64, 200).astype(float)
    q = rng.integers(1, 64, 200).astype(float)
    c = rng.uniform(0, 4096, 200)
    y = 3.0 + 0.05 * b * q + rng.uniform(-0.5, 0.5, 200)  # no context term at all
    coef = fit_parametric(b, q, c, y)
    assert (coef >= 0).all()
    assert coef[2] == pytest.approx(0.05, rel=0.1)


def test_constant_latency_exact_and_validated() -> None:
    cl = ConstantLatency(2.0, 0.5, 0.001)
    assert cl.forward_ms(3, 4, 1000) == pytest.approx(2.0 + 0.5 * 12 + 0.001 * 3000)
    assert cl.extrapolated == 0
    assert ConstantLatency(1.0).forward_ms(100, 100, 1e6) == 1.0
    with pytest.raises(InputError, match="per_token_ms"):
        ConstantLatency(1.0, -1.0)
    with pytest.raises(InputError, match="must cost something"):
        ConstantLatency(0.0)
