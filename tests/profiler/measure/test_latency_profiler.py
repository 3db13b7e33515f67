"""Latency profiler: the written profile validates, an interrupted run resumes without
re-measuring completed visits, stalls are dropped, and bad input exits 2."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from spectune.cli import main  # noqa: E402
from spectune.profiler.measure.grid import Grid, ProfileSettings  # noqa: E402
from spectune.profiler.measure.latency import (  # noqa: E402
    build_profile,
    clean_samples,
    profile_latency,
    settled,
)
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import random_model  # noqa: E402
from spectune.profiler.runtime.timing import device_info  # noqa: E402
from spectune.simulator.errors import InputError  # noqa: E402
from spectune.simulator.latency import LatencyModel  # noqa: E402
from spectune.simulator.schema import ModelArch, load_latency_profile  # noqa: E402

CFG = ModelConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
GRID = Grid(batches=(1, 2, 3), queries=(1, 2, 4), contexts=(0, 8, 16))
# No repair passes: a test must know how many visits a run makes.
SETTINGS = ProfileSettings(dtype="fp32", repeats=2, warmup=0, inner=1, stall_ratio=1e9)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model():
    return random_model(CFG, seed=0)


class _Interrupt(Exception):
    pass


def test_profile_validates_and_fits(tmp_path, model):
    out = tmp_path / "cpu" / "tiny.yaml"
    prof = profile_latency(model, "tiny", out, GRID, SETTINGS, progress=False)
    back = load_latency_profile(out)
    assert back == prof
    assert len(back.points) == 27 and all(p.latency_ms.n == 2 for p in back.points)
    assert back.model.params == CFG.num_params() and back.model.kv_heads == 2
    assert back.provenance.kind == "measured" and back.device.kind == "cpu"
    lm = LatencyModel.from_profile(back)
    assert back.fit is not None and back.fit.cv_error_pct == pytest.approx(
        lm.cv_error_pct, abs=1e-3
    )
    assert not out.with_name("tiny.yaml.partial.jsonl").exists()  # removed when done


def test_resume_keeps_completed_visits(tmp_path, model):
    out = tmp_path / "tiny.yaml"
    partial = tmp_path / "tiny.yaml.partial.jsonl"

    def stop_after_5(n):
        if n == 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        profile_latency(model, "tiny", out, GRID, SETTINGS, progress=False, on_sample=stop_after_5)
    lines = partial.read_text().splitlines()
    assert len(lines) == 1 + 5 and "header" in json.loads(lines[0])
    first = [json.loads(x) for x in lines[1:]]
    with partial.open("a") as fh:  # a kill mid-write leaves a cut line: ignored
        fh.write('{"b": 1, "q": 1, "c"')
    counted = []
    prof = profile_latency(
        model, "tiny", out, GRID, SETTINGS, progress=False, on_sample=counted.append
    )
    assert len(counted) == 27 * 2 - 5  # only the missing visits were measured
    by_point = {(p.batch, p.query_tokens, p.context_tokens): p.latency_ms for p in prof.points}
    for d in first:  # the interrupted run's samples are in the final statistics
        stats = by_point[(d["b"], d["q"], d["c"])]
        largest = 2 * stats.p50 - stats.min  # n == 2: p50 is the mean of both samples
        assert min(abs(d["ms"][0] - stats.min), abs(d["ms"][0] - largest)) < 1e-3


def test_partial_of_another_model_is_refused(tmp_path, model):
    out = tmp_path / "tiny.yaml"
    with pytest.raises(_Interrupt):
        profile_latency(
            model, "tiny", out, GRID, SETTINGS, progress=False,
            on_sample=lambda n: (_ for _ in ()).throw(_Interrupt()),
        )  # fmt: skip
    other = random_model(
        ModelConfig(**{**CFG.__dict__, "hidden_size": 64, "rope_scaling": None}), 0
    )
    with pytest.raises(InputError, match="different model"):
        profile_latency(other, "other", out, GRID, SETTINGS, progress=False)


def test_cpu_clock_profile(tmp_path, model):
    # One thread: the thread's CPU time is the forward's latency without other tenants.
    settings = ProfileSettings(dtype="fp32", repeats=1, warmup=0, inner=1, clock="cpu")
    prof = profile_latency(model, "tiny", tmp_path / "c.yaml", GRID, settings, progress=False)
    assert "CPU time" in prof.provenance.how and len(prof.points) == 27


def test_cpu_clock_needs_one_thread():
    torch.set_num_threads(2)
    try:
        with pytest.raises(InputError, match="--threads 1"):
            ProfileSettings(clock="cpu").validate()
    finally:
        torch.set_num_threads(1)


def test_noisy_points_get_more_visits(tmp_path, model):
    base = ProfileSettings(repeats=3, max_repeats=6, target_rse=0.015)
    assert settled([2.0, 2.0, 2.01], base)
    assert not settled([2.0, 2.5, 2.2], base)  # noisy median: another pass
    assert not settled([2.0, 9.0, 9.5], base)  # two stalls of three: too few clean visits
    counted: list[int] = []
    settings = ProfileSettings(dtype="fp32", repeats=2, max_repeats=4, target_rse=1e-9, inner=1)
    profile_latency(model, "t", tmp_path / "t.yaml", GRID, settings, False, counted.append)
    assert len(counted) == 27 * 4  # nothing settles at an impossible target: all passes run


def test_stalled_visits_are_dropped():
    assert clean_samples([1.0, 1.1, 5.0, 1.05], 1.5) == [1.0, 1.1, 1.05]
    samples = {(1, 1, 0, r): [ms] for r, ms in enumerate([2.0, 2.2, 40.0])}
    samples |= {(1, 2, 0, r): [ms] for r, ms in enumerate([3.0, 3.1, 3.2])}
    arch = ModelArch(name="m", params=1, layers=1, hidden=4, heads=1, kv_heads=1, vocab=4)
    prof = build_profile(samples, [(1, 1, 0), (1, 2, 0)], device_info("cpu", "float32"), arch, "t")
    first = prof.points[0].latency_ms
    assert first.n == 2 and first.p90 < 3.0
    assert "1 of 6 visits" in prof.notes


def test_kv_context_costs_time(tmp_path):
    # The prefilled context is really attended to: a long context is slower than none.
    cfg = ModelConfig(**{**CFG.__dict__, "max_position_embeddings": 4096, "rope_scaling": None})
    grid = Grid(batches=(8,), queries=(4,), contexts=(0, 3000))
    settings = ProfileSettings(dtype="fp32", repeats=3, warmup=1, inner=2)
    prof = profile_latency(random_model(cfg, 0), "m", tmp_path / "m.yaml", grid, settings, False)
    short, long = (p.latency_ms.min for p in prof.points)
    assert long > 1.5 * short


# --------------------------------------------------------------------------- CLI


def test_cli_quick_grid_from_config(tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(CFG.to_hf_dict()))
    out = tmp_path / "p.yaml"
    args = ["profile", "latency", "--model", str(cfg), "--out", str(out), "--dtype", "fp32",
            "--batches", "1,2", "--query", "1,2", "--contexts", "0,8", "--repeats", "1",
            "--inner", "1", "--no-progress", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 8 and load_latency_profile(out).device.dtype == "float32"


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--model", "/nonexistent/dir"], "checkpoint directory not found"),
        (["--batches", "0,1"], "--batches"),
        (["--query", "a,b"], "--query"),
        (["--repeats", "0"], "--repeats"),
        (["--contexts", "100000"], "max_position_embeddings"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, needle):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(CFG.to_hf_dict()))
    args = ["profile", "latency", "--model", str(cfg), "--out", str(tmp_path / "p.yaml"),
            "--no-progress", *extra]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()
