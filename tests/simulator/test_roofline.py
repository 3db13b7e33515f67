"""Roofline model: regimes, tensor parallel, shipped profiles load and are up to date."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spectune.simulator.errors import InputError
from spectune.simulator.hardware import ARCHS, DEVICES, get_arch, get_device
from spectune.simulator.latency import LatencyModel
from spectune.simulator.roofline import (
    DEFAULT_EFFICIENCY as EFF,
)
from spectune.simulator.roofline import (
    check_fits,
    forward_breakdown,
    forward_ms,
    roofline_profile,
    shipped_profiles,
)
from spectune.simulator.schema import load_latency_profile

HWPROFILES = Path(__file__).resolve().parents[2] / "hwprofiles"
H100 = get_device("h100-sxm")
L8B = get_arch("llama-3.1-8b")


@pytest.mark.parametrize(
    ("slug", "params"),
    [
        ("llama-3.1-8b", 8_030_261_248),
        ("llama-3.2-1b", 1_235_814_400),
        ("llama-3.1-70b", 70_553_706_496),
        ("llama-2-7b", 6_738_415_616),
    ],
)
def test_param_counts_match_published(slug: str, params: int) -> None:
    assert ARCHS[slug].params() == params


def test_batch1_decode_is_memory_bound_weight_bytes_over_bandwidth() -> None:
    bd = forward_breakdown(H100, L8B, 1, 1, 1, 0)
    weight_bytes = L8B.weights_read_params() * 2.0
    expected_ms = weight_bytes / (H100.memory_bw_gb_s * 1e9 * EFF.memory_bw) * 1e3
    assert bd.gemm_bound == "memory"
    assert bd.gemm_ms == pytest.approx(expected_ms, rel=1e-9)
    # everything else (overhead, tiny KV and activations) is a small addition
    assert expected_ms < bd.total_ms < expected_ms * 1.10


def test_large_token_count_is_compute_bound() -> None:
    bd = forward_breakdown(H100, L8B, 1, 1, 8192, 0)
    flops = 2.0 * L8B.weights_read_params() * 8192
    assert bd.gemm_bound == "compute"
    assert bd.gemm_ms == pytest.approx(flops / (H100.bf16_tflops * 1e12 * EFF.gemm_compute) * 1e3)
    # prefill of 8192 tokens costs far more than one decode step, roughly linearly in tokens
    assert bd.total_ms > 20 * forward_ms(H100, L8B, 1, 1, 1, 0)


def test_kv_reads_grow_with_batch_times_context() -> None:
    short = forward_breakdown(H100, L8B, 1, 64, 1, 512)
    long = forward_breakdown(H100, L8B, 1, 64, 1, 32768)
    assert long.attention_bound == "memory"
    kv = L8B.kv_bytes_per_token(2.0) * 64 * (32768 - 512)
    assert long.attention_ms - short.attention_ms == pytest.approx(
        kv / (H100.memory_bw_gb_s * 1e9 * EFF.memory_bw) * 1e3, rel=1e-6
    )


def test_tensor_parallel_reduces_latency_and_costs_allreduce() -> None:
    arch = get_arch("llama-3.1-70b")
    tp4 = forward_breakdown(H100, arch, 4, 1, 1, 2048)
    tp8 = forward_breakdown(H100, arch, 8, 1, 1, 2048)
    assert tp8.total_ms < tp4.total_ms
    assert tp4.allreduce_ms > 0 and tp8.allreduce_ms > 0
    # the all-reduce latency term: 2 per layer + 1 logits gather
    assert tp4.allreduce_ms >= (2 * arch.layers + 1) * H100.link_latency_us * 1e-3
    assert forward_breakdown(H100, L8B, 1, 1, 1, 2048).allreduce_ms == 0.0
    # PCIe (L40S) all-reduce is slower than NVLink
    l40s = forward_breakdown(get_device("l40s"), arch, 8, 64, 1, 2048)
    h100 = forward_breakdown(H100, arch, 8, 64, 1, 2048)
    assert l40s.allreduce_ms > 2 * h100.allreduce_ms


def test_monotone_in_every_axis_on_the_grid() -> None:
    prev = None
    for b in (1, 4, 16, 64, 256):
        row = [forward_ms(H100, L8B, 1, b, q, c) for q in (1, 4, 16) for c in (0, 2048)]
        if prev is not None:
            assert all(x > y for x, y in zip(row, prev, strict=True))
        prev = row
    for q1, q2 in ((1, 2), (8, 16), (512, 2048)):
        assert forward_ms(H100, L8B, 1, 4, q2, 100) > forward_ms(H100, L8B, 1, 4, q1, 100)


def test_faster_devices_are_faster_at_batch1() -> None:
    times = {d: forward_ms(DEVICES[d], L8B, 1, 1, 1, 1024) for d in DEVICES}
    assert times["h200"] < times["h100-sxm"] < times["a100-80gb"] < times["l40s"]


def test_eagle_head_is_cheap_but_reads_the_lm_head() -> None:
    eagle = get_arch("eagle-llama-3.1-8b")
    head = forward_ms(H100, eagle, 1, 1, 1, 2048)
    target = forward_ms(H100, L8B, 1, 1, 1, 2048)
    assert head < 0.15 * target
    lm_head_ms = eagle.embedding_params() * 2 / (H100.memory_bw_gb_s * 1e9 * EFF.memory_bw) * 1e3
    assert head > lm_head_ms
    assert eagle.params() < 0.05 * L8B.params()  # shares embedding and lm_head


def test_check_fits() -> None:
    with pytest.raises(InputError, match=r"do not fit.*try --tp 2"):
        check_fits(H100, get_arch("llama-3.1-70b"), 1)
    check_fits(H100, get_arch("llama-3.1-70b"), 4)
    check_fits(get_device("l40s"), get_arch("llama-3.1-70b"), 4)


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match=r"unknown device 'tpu'.*h100-sxm"):
        get_device("tpu")
    with pytest.raises(InputError, match=r"unknown model 'gpt'.*llama-3\.1-8b"):
        get_arch("gpt")
    with pytest.raises(InputError):
        forward_ms(H100, L8B, 1, 0, 1, 0)
    with pytest.raises(InputError, match="tp must be >= 1"):
        roofline_profile("h100-sxm", "llama-3.1-8b", tp=0)


def test_profile_fields_and_grid() -> None:
    p = roofline_profile("a100-80gb", "llama-3.1-70b", tp=8, with_fit=False)
    assert p.provenance.kind == "roofline"
    assert "x0.8" in p.provenance.how and "1.5 us per kernel" in p.provenance.how
    assert p.device.count == 8 and p.model.tensor_parallel == 8
    assert p.device.memory_gib == 80.0
    assert max(q.batch * q.query_tokens for q in p.points) <= 16384
    assert any(q.batch == 256 and q.query_tokens == 1 for q in p.points)
    assert any(q.batch == 1 and q.query_tokens == 8192 for q in p.points)
    assert p.fit is None


def test_shipped_set_is_complete() -> None:
    shipped = shipped_profiles()
    assert len(shipped) == 24  # 4 devices x 6 models; 70B fits L40S at tp4 and tp8
    assert {d for d, *_ in shipped} == set(DEVICES)


@pytest.mark.parametrize(
    ("device", "file_slug", "arch", "tp"),
    shipped_profiles(),
    ids=[f"{d}/{f}" for d, f, _, _ in shipped_profiles()],
)
def test_every_shipped_profile_loads_is_current_and_interpolates(device, file_slug, arch, tp):
    path = HWPROFILES / device / f"{file_slug}.yaml"
    prof = load_latency_profile(path)
    # regenerated from the code it equals the file: run `spectune roofline --all
    # --out-dir hwprofiles` after changing factors or tables
    assert prof == roofline_profile(device, arch, tp), f"{path} is stale"
    assert prof.device.memory_gib is not None and prof.device.count == tp
    model = LatencyModel.from_path(path)
    assert math.isfinite(model.cv_error_pct) and model.cv_error_pct < 5.0
    assert prof.fit is not None and prof.fit.cv_error_pct == pytest.approx(
        model.cv_error_pct, abs=1e-3
    )
    # the grid covers decode at every batch up to 256 and prefill chunks at batch 1
    model.forward_ms(256, 1, 1000.5)
    model.forward_ms(1, 8192, 0)
    model.forward_ms(64, 8, 30000)
    assert model.extrapolated == 0


def test_every_yaml_under_hwprofiles_loads_and_reports_cv_error() -> None:
    """Measured profiles that others add land here too: each must validate and build."""
    paths = sorted(HWPROFILES.rglob("*.yaml"))
    assert len(paths) >= 24
    for path in paths:
        model = LatencyModel.from_path(path)
        cv = model.cv_error_pct
        assert (math.isfinite(cv) and cv >= 0) or model.cv_points == 0, path
        assert model.forward_ms(1, 1, 0) > 0


@pytest.mark.parametrize(
    ("target", "low", "high"),
    [
        # 0.9 x 0.95 x 79.65 GiB - 15 GiB weights, 128 KiB per token -> ~0.43 M tokens
        ("h100-sxm/llama-3.1-8b.yaml", 350_000, 500_000),
        # 4 x 45 GiB x 0.855 - 131 GiB weights, 320 KiB per token -> ~74 k tokens
        ("l40s/llama-3.1-70b-tp4.yaml", 50_000, 100_000),
    ],
)
def test_kv_cache_tokens_auto_works_with_shipped_profiles(tmp_path, target, low, high) -> None:
    from spectune.simulator.scenario import load_scenario

    sc = tmp_path / "sc.yaml"
    sc.write_text(
        "schema: spectune/scenario/v1\n"
        f"target: {{latency_profile: {HWPROFILES / target}}}\n"
        "workload: {mode: offline, num_requests: 4, prompt_tokens: {dist: constant, value: 8},"
        " output_tokens: {dist: constant, value: 8}}\n"
    )
    assert low < load_scenario(sc, []).kv_cache_tokens < high
