"""The calibrated forward cost: MoE expert touch (checked against a direct simulation of
routing), monotonicity, tensor parallelism, dtypes, heads and drafters."""

from __future__ import annotations

import numpy as np
import pytest
from hfconfigs import MISTRAL_7B_V03
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator.costmodel.catalog import get_model
from spectune.simulator.costmodel.dtypes import get_weight_dtype
from spectune.simulator.costmodel.model import calibrated_model, roofline_model, verify_ratio
from spectune.simulator.costmodel.moe import (
    expected_touched_experts,
    expected_touched_skewed,
    simulate_touched,
)
from spectune.simulator.errors import InputError
from spectune.simulator.hardware import DEVICES, get_device

H100 = get_device("h100-sxm")
A100 = get_device("a100-80gb")


@pytest.mark.parametrize(
    ("tokens", "experts", "k"),
    [(1, 128, 8), (4, 128, 8), (16, 128, 8), (64, 128, 8), (3, 8, 2), (40, 256, 8)],
)
def test_expert_touch_matches_a_direct_simulation_of_routing(tokens, experts, k) -> None:
    rng = np.random.default_rng(7)
    simulated = simulate_touched(tokens, experts, k, rng, trials=600)
    expected = expected_touched_experts(tokens, experts, k)
    # binomial-like spread of the mean over 600 trials: well inside 2% of E
    assert expected == pytest.approx(simulated, abs=0.02 * experts)
    assert min(experts, k) <= expected <= experts


def test_skewed_routing_touches_fewer_experts_and_matches_simulation() -> None:
    rng = np.random.default_rng(3)
    popularity = rng.dirichlet(np.full(64, 0.5))
    for tokens in (2, 8, 32):
        skewed = expected_touched_skewed(tokens, popularity, 4)
        assert skewed < expected_touched_experts(tokens, 64, 4)  # uniform is the upper bound
        sim = simulate_touched(tokens, 64, 4, rng, trials=400, popularity=popularity)
        assert skewed == pytest.approx(sim, rel=0.08)
    assert expected_touched_skewed(5, np.ones(64), 4) == pytest.approx(
        expected_touched_experts(5, 64, 4)
    )


def test_verify_widens_expert_reads_for_moe_not_for_dense() -> None:
    moe = calibrated_model(H100, get_model("qwen3-30b-a3b"), 1)
    w1, w4 = moe.work(1, 1, 1024), moe.work(1, 4, 1024)
    assert w1.touched_experts == pytest.approx(8.0)
    assert w4.touched_experts == pytest.approx(expected_touched_experts(4, 128, 8))
    assert w4.weight_bytes > 2.5 * w1.weight_bytes  # 4 tokens touch ~3.6x the experts
    assert verify_ratio(moe, 1, 3, 1024) > 1.5  # verifying 4 tokens is far from free
    dense = calibrated_model(H100, get_model("qwen3-8b"), 1)
    assert dense.work(1, 4, 1024).weight_bytes == dense.work(1, 1, 1024).weight_bytes
    assert verify_ratio(dense, 1, 3, 1024) < 1.05


MODELS = ("llama-3.1-8b", "qwen3-30b-a3b", "eagle3-llama-3.1-8b", "llama-3.2-1b")


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    device=st.sampled_from(sorted(DEVICES)),
    kind=st.sampled_from(("calibrated", "roofline")),
    b=st.integers(1, 256),
    q=st.integers(1, 64),
    ctx=st.floats(0, 40000),
    axis=st.sampled_from(("b", "q", "ctx")),
)
def test_more_tokens_or_context_is_never_cheaper(model, device, kind, b, q, ctx, axis) -> None:
    build = calibrated_model if kind == "calibrated" else roofline_model
    m = build(DEVICES[device], get_model(model), 1)
    base = m.forward_ms(b, q, ctx)
    more = {"b": (b + 1, q, ctx), "q": (b, q + 1, ctx), "ctx": (b, q, ctx + 97.0)}[axis]
    assert m.forward_ms(*more) >= base * (1 - 1e-12)


def test_calibrated_verify_costs_more_than_the_ideal_roofline_at_load() -> None:
    """Real GPUs pay for verify tokens before the ridge; the roofline prices them ~free."""
    shape = get_model("llama-3.1-8b")
    cal = verify_ratio(calibrated_model(H100, shape), 64, 3, 2048)
    roof = verify_ratio(roofline_model(H100, shape), 64, 3, 2048)
    assert roof < 1.2 < cal
    # and the ratio grows with batch (the effect that shortens the best k at load)
    m = calibrated_model(H100, shape)
    ratios = [verify_ratio(m, b, 3, 2048) for b in (1, 8, 64, 256)]
    assert ratios == sorted(ratios)


def test_tensor_parallel_scaling() -> None:
    shape = get_model("llama-3.1-70b")
    t = {tp: calibrated_model(H100, shape, tp) for tp in (2, 4, 8)}
    b1 = {tp: m.forward_ms(1, 1, 2048) for tp, m in t.items()}
    assert b1[8] < b1[4] < b1[2]
    # sub-linear: collectives and per-layer costs do not shrink with tp
    assert b1[2] / b1[8] < 4.0
    bd = t[8].breakdown(1, 1, 2048)
    assert bd.allreduce_ms > 0.0
    assert calibrated_model(H100, get_model("llama-3.1-8b")).breakdown(1, 1, 0).allreduce_ms == 0
    # per-GPU weight bytes divide by tp
    assert t[4].work(1, 1, 0).weight_bytes == pytest.approx(2 * t[8].work(1, 1, 0).weight_bytes)
    with pytest.raises(InputError, match="not divisible by tp 3"):
        calibrated_model(H100, shape, 3)


def test_bf16_vs_fp8_weights() -> None:
    shape = get_model("qwen3-8b")
    bf16, fp8 = calibrated_model(H100, shape), calibrated_model(H100, shape, dtype="fp8")
    # the linear layers but the lm_head halve their bytes; memory-bound decode speeds up
    assert fp8.work(1, 1, 0).weight_bytes < 0.6 * bf16.work(1, 1, 0).weight_bytes
    assert fp8.forward_ms(1, 1, 512) < 0.8 * bf16.forward_ms(1, 1, 512)
    assert fp8.forward_ms(1, 8192, 0) < bf16.forward_ms(1, 8192, 0)  # 2x tensor-core peak
    assert fp8.weight_bytes() < 0.6 * bf16.weight_bytes()
    # the embedding and lm_head stay bf16 in a quantised model's memory
    emb = 2 * shape.vocab * shape.hidden * 2.0
    assert fp8.weight_bytes() == pytest.approx((shape.params() - emb / 2) * 1.0 + emb)


def test_dtype_the_device_cannot_run_says_so() -> None:
    with pytest.raises(InputError, match=r"A100 .* has no fp8 tensor cores .*bf16") as e:
        calibrated_model(A100, get_model("llama-3.1-8b"), dtype="fp8")
    assert e.value.field == "--dtype"
    with pytest.raises(InputError, match="no fp4 tensor cores"):
        calibrated_model(H100, get_model("llama-3.1-8b"), dtype="fp4")
    calibrated_model(get_device("b200"), get_model("llama-3.1-8b"), dtype="fp4")
    calibrated_model(A100, get_model("llama-3.1-8b"), dtype="int4-weight")  # bf16 compute
    with pytest.raises(InputError, match=r"unknown dtype .int3.*int4-weight"):
        get_weight_dtype("int3")
    with pytest.raises(InputError, match="unknown KV-cache dtype"):
        calibrated_model(H100, get_model("llama-3.1-8b"), kv_dtype="int2")


def test_kv_cache_dtype_halves_kv_reads() -> None:
    shape = get_model("llama-3.1-8b")
    bf, f8 = calibrated_model(H100, shape), calibrated_model(H100, shape, kv_dtype="fp8")
    assert f8.kv_bytes_per_token() == bf.kv_bytes_per_token() / 2
    assert f8.forward_ms(64, 1, 16384) < 0.8 * bf.forward_ms(64, 1, 16384)


def test_sliding_window_caps_attention_reads() -> None:
    from spectune.simulator.costmodel.hfconfig import shape_from_config

    cfg = {**MISTRAL_7B_V03, "vocab_size": 32000}
    full = calibrated_model(H100, shape_from_config(cfg))
    windowed = calibrated_model(H100, shape_from_config({**cfg, "sliding_window": 4096}))
    assert windowed.forward_ms(16, 1, 2000) == pytest.approx(full.forward_ms(16, 1, 2000))
    assert windowed.forward_ms(16, 1, 32000) < 0.6 * full.forward_ms(16, 1, 32000)


def test_heads_are_cheap_and_mtp_reads_touched_experts() -> None:
    target = calibrated_model(H100, get_model("llama-3.1-8b"))
    for head in ("eagle-llama-3.1-8b", "eagle3-llama-3.1-8b"):
        m = calibrated_model(H100, get_model(head))
        assert m.forward_ms(1, 1, 2048) < 0.1 * target.forward_ms(1, 1, 2048)
    glm = get_model("glm-4.5-air")
    mtp = calibrated_model(H100, get_model("mtp-glm-4.5-air"), 4)
    tgt = calibrated_model(H100, glm, 4)
    assert mtp.forward_ms(8, 1, 2048) < 0.15 * tgt.forward_ms(8, 1, 2048)
    assert mtp.work(8, 1, 0).touched_experts > mtp.work(1, 1, 0).touched_experts


def test_eager_engines_pay_per_layer() -> None:
    shape = get_model("llama-3.1-8b")
    graphs, eager = calibrated_model(H100, shape), calibrated_model(H100, shape, eager=True)
    extra = eager.forward_ms(1, 1, 0) - graphs.forward_ms(1, 1, 0)
    assert extra == pytest.approx(shape.layers * graphs.params.eager_layer_us * 1e-3)


def test_grid_pricing_equals_one_by_one() -> None:
    m = calibrated_model(H100, get_model("qwen3-30b-a3b"), 2)
    pts = [(1, 1, 0.0), (8, 4, 2048.0), (64, 1, 8192.0), (1, 4096, 0.0)]
    one = [m.forward_ms(*p) for p in pts]
    assert m.grid_ms(pts) == pytest.approx(one, rel=1e-12)
