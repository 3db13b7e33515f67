"""Calibration: the public data and its interpretation, the fit (reproduces what it was
given, recovers known parameters), leave-one-source-out isolation, the shipped file."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from spectune.simulator.costmodel import calibration as C
from spectune.simulator.costmodel import fit as F
from spectune.simulator.costmodel.observations import (
    DATA_DIR,
    FITTED,
    load_points,
    load_sources,
    observations,
)


@pytest.fixture(scope="module")
def data():
    return observations()


@pytest.fixture(scope="module")
def fitted(data):
    return F.fit(data[0], C.load().calibration.prior_sd)


def test_every_point_is_used_or_left_out_with_a_reason(data) -> None:
    obs, excluded = data
    points = load_points()
    assert len(obs) + len(excluded) == len(points)
    assert all(e.reason for e in excluded)
    sources = load_sources()
    for p in points:  # every point names a documented source with an independence group
        assert p["source_id"] in sources and sources[p["source_id"]]["independence_group"]
        assert p["value_printed"] is not None and p["read_from_plot"] is False
    # speculative-decoding measurements live in another file and are never read here
    assert not any(o.point_id.startswith("sd") for o in obs)
    assert (DATA_DIR / "sd_points.yaml").exists()


def test_coverage_meets_the_calibration_requirement(data) -> None:
    """At least 3 GPUs x 3 models from at least 4 independent source groups are fitted."""
    fitted_obs = [o for o in data[0] if o.category in FITTED]
    assert len({o.group for o in fitted_obs}) >= 4
    models = defaultdict(set)
    for o in fitted_obs:
        models[o.device].add(o.model)
    assert sum(len(m) >= 3 for m in models.values()) >= 2 and len(models) >= 3


def test_interpretation_rules(data) -> None:
    obs, excluded = data
    by_id = {o.point_id: o for o in obs}
    reasons = {e.point_id: e.reason for e in excluded}
    # silybench c=512, decode-128/1024: 512 x 1152 tokens exceed the run's 377,024-token cache
    assert "exceeds the 377024-token KV cache" in reasons["fp0425"]
    assert by_id["fp0442"].batch == 512  # chat-128/128 at c=512 fits: batch = concurrency
    assert by_id["fp0442"].context == 128 + 64
    assert "batch cap" in reasons["fp0174"]  # NIM c=100
    nim = by_id["fp0173"]  # NIM c=50: mean ITL pays 49 other prefills over 500 steps
    assert nim.others_prefill == pytest.approx(49 / 500) and nim.kv_dtype == "fp8"
    assert by_id["fp0372"].category == "kernel_loop"  # megakernel repo's graph loop
    assert by_id["fp0369"].category == "eager" and by_id["fp0369"].eager
    assert by_id["fp0002"].category == "weight_only" and by_id["fp0002"].dtype == "int4-weight"
    assert "session set-up" in reasons["fp0182"]  # LMDeploy throughput rows
    assert "KV cache" in reasons["fp0224"]  # LMDeploy 7B b64 x 4096 tokens cannot fit
    assert by_id["fp0049"].category == "prefill" and by_id["fp0049"].input_len == 128


def test_the_fit_reproduces_the_points_it_was_given(data, fitted) -> None:
    obs = [o for o in data[0] if o.category in FITTED]
    pred = F.predict_with(fitted, obs)
    err = np.abs(pred / np.array([o.measured for o in obs]) - 1)
    decode = err[[i for i, o in enumerate(obs) if o.category == "decode"]]
    assert np.median(decode) < 0.05 and decode.max() < 0.30


def test_the_fit_recovers_known_parameters_from_synthetic_measurements(data, fitted) -> None:
    """Measurements made by the model itself, with parameters the fit does not start from,
    are reproduced to a fraction of a percent (the fit is not stuck at its start)."""
    obs = [o for o in data[0] if o.category in FITTED]
    truth = {
        g: replace(p, bw_eff=0.7 if g == "ampere" else 0.9, layer_us=20.0, seq_us=12.0)
        for g, p in fitted.params.items()
    }
    true_cal = F.Calibration(truth, 3.0, (), 0)
    synthetic = [
        replace(o, measured=float(v))
        for o, v in zip(obs, F.predict_with(true_cal, obs), strict=True)
    ]
    refit = F.fit(synthetic, prior_sd=1.5)  # a wide prior lets the generations differ
    pred = F.predict_with(refit, synthetic)
    err = np.abs(pred / np.array([o.measured for o in synthetic]) - 1)
    assert np.median(err) < 0.005 and err.max() < 0.03
    assert refit.params["ampere"].bw_eff < refit.params["hopper"].bw_eff


def test_leave_one_source_out_never_sees_the_held_out_group(data, monkeypatch) -> None:
    obs = data[0]
    seen: list[set[str]] = []
    real_fit = F.fit

    def spy(train):
        seen.append({o.group for o in train})
        return real_fit(train)

    monkeypatch.setattr(F, "fit", lambda train, prior_sd=0.15: spy(train))
    pred, fits = F.leave_one_group_out(obs, candidates=(0.15,))
    groups = sorted({o.group for o in obs})
    assert len(seen) == len(groups)
    for g, trained_on in zip(groups, seen, strict=True):
        assert g not in trained_on and g not in fits[g].groups
    assert np.isfinite(pred).all()


def test_shipped_calibration_is_the_fit_of_the_shipped_data(fitted) -> None:
    """Regenerate with `benchmarks/calibrate_gpu.py --write` after changing data or model."""
    shipped = C.load()
    assert shipped.calibration.prior_sd in F.PRIOR_SD_CANDIDATES
    assert shipped.calibration.points == fitted.points
    assert shipped.calibration.groups == fitted.groups
    assert shipped.calibration.ttft_overhead_ms == pytest.approx(fitted.ttft_overhead_ms, rel=1e-4)
    for g in F.GENERATIONS:
        a, b = shipped.params(g).as_dict(), fitted.params[g].as_dict()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-9), (g, k)
    for key in ("decode_itl", "prefill", "static"):
        assert shipped.errors[key]["points"] > 0
    assert shipped.error_summary()["decode_itl_loso_median_pct"] > 0


def test_calibration_file_errors(tmp_path) -> None:
    from spectune.simulator.errors import InputError

    with pytest.raises(InputError, match="no GPU calibration"):
        C.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: other\n")
    with pytest.raises(InputError, match="schema must be"):
        C.load(bad)
