"""Pure roofline (the comparison model): regimes, tensor parallel, the fixed factors."""

from __future__ import annotations

import pytest

from spectune.simulator.costmodel.catalog import get_model
from spectune.simulator.errors import InputError
from spectune.simulator.hardware import DEVICES, get_device
from spectune.simulator.roofline import (
    ROOFLINE_PARAMS as P,
)
from spectune.simulator.roofline import (
    check_fits,
    forward_breakdown,
    forward_ms,
    roofline_profile,
)

H100 = get_device("h100-sxm")
L8B = get_model("llama-3.1-8b")


def _weights_read_bytes(shape) -> float:
    """Every linear layer's weights in bf16 (the embedding is gathered, not read)."""
    return sum(lin.params() for lin in shape.linears()) * 2.0


def test_batch1_decode_is_memory_bound_weight_bytes_over_bandwidth() -> None:
    bd = forward_breakdown(H100, L8B, 1, 1, 1, 0)
    expected_ms = _weights_read_bytes(L8B) / (H100.memory_bw_gb_s * 1e9 * P.bw_eff) * 1e3
    assert bd.gemm_bound == "memory"
    assert bd.gemm_ms == pytest.approx(expected_ms, rel=1e-9)
    # everything else (overhead, tiny KV and activations) is a small addition
    assert expected_ms < bd.total_ms < expected_ms * 1.10


def test_large_token_count_is_compute_bound() -> None:
    bd = forward_breakdown(H100, L8B, 1, 1, 8192, 0)
    flops = _weights_read_bytes(L8B) / 2.0 * 2.0 * 8192
    assert bd.gemm_bound == "compute"
    assert bd.gemm_ms == pytest.approx(flops / (H100.bf16_tflops * 1e12 * P.gemm_eff) * 1e3)
    assert bd.total_ms > 20 * forward_ms(H100, L8B, 1, 1, 1, 0)


def test_kv_reads_grow_with_batch_times_context() -> None:
    short = forward_breakdown(H100, L8B, 1, 64, 1, 512)
    long = forward_breakdown(H100, L8B, 1, 64, 1, 32768)
    assert long.attention_bound == "memory"
    kv = L8B.kv_bytes_per_token(2.0) * 64 * (32768 - 512)
    assert long.attention_ms - short.attention_ms == pytest.approx(
        kv / (H100.memory_bw_gb_s * 1e9 * P.bw_eff) * 1e3, rel=1e-6
    )


def test_tensor_parallel_reduces_latency_and_costs_allreduce() -> None:
    arch = get_model("llama-3.1-70b")
    tp4 = forward_breakdown(H100, arch, 4, 1, 1, 2048)
    tp8 = forward_breakdown(H100, arch, 8, 1, 1, 2048)
    assert tp8.total_ms < tp4.total_ms
    assert tp4.allreduce_ms >= (2 * arch.layers + 1) * H100.link_latency_us * 1e-3
    assert forward_breakdown(H100, L8B, 1, 1, 1, 2048).allreduce_ms == 0.0
    l40s = forward_breakdown(get_device("l40s"), arch, 8, 64, 1, 2048)
    h100 = forward_breakdown(H100, arch, 8, 64, 1, 2048)
    assert l40s.allreduce_ms > 2 * h100.allreduce_ms  # PCIe vs NVLink


def test_an_ideal_roofline_prices_verify_almost_free_at_batch_64() -> None:
    """The issue's motivating figure: 4 tokens per sequence at batch 64 cost ~1.1x."""
    ratio = forward_ms(H100, L8B, 1, 64, 4, 2048) / forward_ms(H100, L8B, 1, 64, 1, 2048)
    assert 1.0 < ratio < 1.2


def test_faster_devices_are_faster_at_batch1() -> None:
    t = {d: forward_ms(DEVICES[d], L8B, 1, 1, 1, 1024) for d in DEVICES}
    assert t["b200"] < t["h200"] < t["h100-sxm"] < t["a100-80gb"] < t["l40s"]


def test_eagle_head_is_cheap_but_reads_the_lm_head() -> None:
    eagle = get_model("eagle-llama-3.1-8b")
    head = forward_ms(H100, eagle, 1, 1, 1, 2048)
    assert head < 0.15 * forward_ms(H100, L8B, 1, 1, 1, 2048)
    lm_head_ms = eagle.vocab * eagle.hidden * 2 / (H100.memory_bw_gb_s * 1e9 * P.bw_eff) * 1e3
    assert head > lm_head_ms
    assert eagle.params() < 0.05 * L8B.params()  # shares embedding and lm_head


def test_check_fits() -> None:
    with pytest.raises(InputError, match=r"do not fit.*try --tp 2"):
        check_fits(H100, get_model("llama-3.1-70b"), 1)
    check_fits(H100, get_model("llama-3.1-70b"), 4)
    check_fits(get_device("l40s"), get_model("llama-3.1-70b"), 4)


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match=r"unknown device 'tpu'.*h100-sxm"):
        get_device("tpu")
    with pytest.raises(InputError, match=r"unknown model 'gpt'.*llama-3\.1-8b.*--config"):
        get_model("gpt")
    with pytest.raises(InputError):
        forward_ms(H100, L8B, 1, 0, 1, 0)
    with pytest.raises(InputError, match="must be >= 1"):
        roofline_profile("h100-sxm", "llama-3.1-8b", tp=0)


def test_profile_fields_and_grid() -> None:
    p = roofline_profile("a100-80gb", "llama-3.1-70b", tp=8, with_fit=False)
    assert p.provenance.kind == "roofline"
    assert "x 0.8" in p.provenance.how and "not fitted" in p.provenance.how
    assert p.device.count == 8 and p.model.tensor_parallel == 8
    assert p.device.memory_gib == 80.0
    assert max(q.batch * q.query_tokens for q in p.points) <= 16384
    assert any(q.batch == 256 and q.query_tokens == 1 for q in p.points)
    assert any(q.batch == 1 and q.query_tokens == 8192 for q in p.points)
    assert p.fit is None
