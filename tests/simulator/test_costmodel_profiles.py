"""Shipped calibrated profiles: current with the code and calibration, loadable, and usable
by the simulator (kv_cache_tokens: auto with drafter weights and KV)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spectune.simulator.costmodel.catalog import get_model
from spectune.simulator.costmodel.model import calibrated_model
from spectune.simulator.costmodel.profiles import cost_profile, shipped_profiles
from spectune.simulator.hardware import DEVICES
from spectune.simulator.latency import LatencyModel
from spectune.simulator.schema import load_latency_profile

HWPROFILES = Path(__file__).resolve().parents[2] / "hwprofiles"
SHIPPED = shipped_profiles()


def test_the_shipped_set_covers_the_devices_models_and_heads() -> None:
    files = {(d, f) for d, f, _, _ in SHIPPED}
    assert (
        {d for d, _ in files} == set(DEVICES) == {"h100-sxm", "h200", "a100-80gb", "l40s", "b200"}
    )
    for dev in DEVICES:
        names = {f for d, f in files if d == dev}
        for stem in (
            "llama-3.1-8b",
            "llama-3.2-1b",
            "llama-3.1-70b-tp4",
            "llama-3.1-70b-tp8",
            "qwen3-8b",
            "eagle-llama-3.1-8b",
            "eagle3-llama-3.1-8b",
            "eagle3-llama-3.1-70b-tp4",
            "eagle3-llama-3.1-70b-tp8",
        ):
            assert stem in names, (dev, stem)
        for stem in ("qwen3-32b", "qwen3-30b-a3b", "glm-4.5-air", "mtp-glm-4.5-air"):
            assert any(n == stem or n.startswith(stem + "-tp") for n in names), (dev, stem)


@pytest.mark.parametrize(
    ("device", "file_slug", "model", "tp"), SHIPPED, ids=[f"{d}/{f}" for d, f, _, _ in SHIPPED]
)
def test_every_shipped_profile_is_current_and_interpolates(device, file_slug, model, tp) -> None:
    path = HWPROFILES / device / f"{file_slug}.yaml"
    prof = load_latency_profile(path)
    # regenerate with `spectune roofline --all --out-dir hwprofiles`
    fresh = cost_profile(calibrated_model(DEVICES[device], get_model(model), tp))
    assert prof == fresh, f"{path} is stale"
    assert prof.provenance.kind == "calibrated" and prof.provenance.error
    assert prof.provenance.error["decode_itl_loso_median_pct"] > 0
    assert prof.device.count == tp and prof.model.weight_bytes and prof.model.kv_elements_per_token
    lm = LatencyModel.from_path(path)
    assert math.isfinite(lm.cv_error_pct) and lm.cv_error_pct < 5.0
    lm.forward_ms(256, 1, 1000.5)
    lm.forward_ms(1, 8192, 0)
    lm.forward_ms(64, 8, 30000)
    assert lm.extrapolated == 0


def test_every_yaml_under_hwprofiles_loads() -> None:
    """Measured profiles that others add land here too: each must validate and build."""
    paths = [p for p in sorted(HWPROFILES.rglob("*.yaml")) if "calibration" not in p.parts]
    assert len(paths) >= len(SHIPPED)
    for path in paths:
        model = LatencyModel.from_path(path)
        assert math.isfinite(model.cv_error_pct) or model.cv_points == 0, path
        assert model.forward_ms(1, 1, 0) > 0


def _scenario(tmp_path: Path, target: str, drafter: str | None = None, extra: str = "") -> Path:
    sc = tmp_path / "sc.yaml"
    text = (
        "schema: spectune/scenario/v1\n"
        f"target: {{latency_profile: {HWPROFILES / target}}}\n"
        "workload: {mode: offline, num_requests: 4, prompt_tokens: {dist: constant, value: 8},"
        " output_tokens: {dist: constant, value: 8}}\n" + extra
    )
    if drafter:
        text += (
            f"drafters: [{{name: d, kind: heads, latency_profile: {HWPROFILES / drafter},"
            " acceptance: {per_position: [0.7]}}]\n"
            "spec: {drafter: d, num_spec_tokens: 2}\n"
        )
    sc.write_text(text)
    return sc


def test_kv_cache_tokens_auto_counts_weights_and_drafter_kv(tmp_path) -> None:
    from spectune.simulator.scenario import load_scenario

    t = "h100-sxm/llama-3.1-8b.yaml"
    plain = load_scenario(_scenario(tmp_path, t)).kv_cache_tokens
    # 0.9 x 0.95 x 79.65 GiB - 14.96 GiB of weights, 128 KiB per token
    expected = (79.65 * 0.9 * 0.95 - 8_030_261_248 * 2 / 2**30) * 2**30 / (32 * 8 * 128 * 2 * 2)
    assert plain == pytest.approx(expected, rel=1e-6)
    head = load_scenario(
        _scenario(tmp_path, t, "h100-sxm/eagle3-llama-3.1-8b.yaml")
    ).kv_cache_tokens
    # the EAGLE-3 head's 0.42 B parameters and its one layer of KV come out of the budget
    assert head < plain
    e3 = get_model("eagle3-llama-3.1-8b")
    free = (79.65 * 0.9 * 0.95 * 2**30) - (8_030_261_248 + e3.params()) * 2
    assert head == int(free // ((32 + 1) * 8 * 128 * 2 * 2))
    # an explicit scenario byte size wins over the profile's own
    fp8 = load_scenario(
        _scenario(tmp_path, t, extra="serving: {kv_cache_tokens: auto, kv_dtype_bytes: 1}\n")
    ).kv_cache_tokens
    assert fp8 == pytest.approx(2 * plain, abs=2)  # half the bytes per element


def test_moe_profiles_state_their_experts() -> None:
    prof = load_latency_profile(HWPROFILES / "h200" / "qwen3-30b-a3b.yaml")
    assert prof.model.experts == 128 and prof.model.experts_per_token == 8
    assert prof.model.active_params < 0.15 * prof.model.params
    mtp = load_latency_profile(HWPROFILES / "h100-sxm" / "mtp-glm-4.5-air-tp4.yaml")
    assert mtp.model.kind == "mtp" and mtp.device.count == 4
