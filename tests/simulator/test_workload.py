"""Request generation: trace parsing, arrival processes, length distributions, modes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from spectune.simulator.errors import InputError
from spectune.simulator.schema import Arrival, LengthDist, Workload
from spectune.simulator.workload import build_requests, read_trace, sample_arrivals, sample_lengths

REPO = Path(__file__).resolve().parents[2]
CODE_TRACE = REPO / "traces" / "azure_llm_2023_code.csv"


def rngs(seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]


def write_csv(path: Path, rows: list[str], header: str = "TIMESTAMP,ContextTokens,GeneratedTokens"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_the_azure_code_trace() -> None:
    tr = read_trace(CODE_TRACE)
    assert tr.prompt_tokens.shape == (8819,)
    assert tr.time_s[0] == 0.0 and np.all(np.diff(tr.time_s) >= 0)
    # First rows of the file: 18:17:03.9799600,4808,10 and 18:17:04.0319600,3180,8.
    assert tr.time_s[1] == pytest.approx(0.052, abs=1e-9)
    assert tr.prompt_tokens[:2].tolist() == [4808, 3180]
    assert tr.output_tokens[:2].tolist() == [10, 8]
    # ~57 minutes of production traffic.
    assert 3400 < tr.time_s[-1] < 3500


def test_trace_cache_hits_and_invalidates_on_change(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "t.csv", ["2023-11-16 18:00:00.0000000,10,5"])
    a = read_trace(p)
    assert read_trace(p) is a
    write_csv(p, ["2023-11-16 18:00:00.0000000,10,5", "2023-11-16 18:00:01.5000000,20,7"])
    os.utime(p, ns=(1, 1))  # a different mtime even on coarse clocks
    b = read_trace(p)
    assert b is not a and b.time_s.tolist() == [0.0, 1.5]


def test_trace_columns_found_by_name_in_any_order(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path / "t.csv",
        ["7,2023-11-16 18:00:02.0000000,30,x", "9,2023-11-16 18:00:03.0000000,40,y"],
        header="GeneratedTokens,TIMESTAMP,ContextTokens,Note",
    )
    tr = read_trace(p)
    assert tr.prompt_tokens.tolist() == [30, 40] and tr.output_tokens.tolist() == [7, 9]
    assert tr.time_s.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["2023-11-16 18:00:00,10,5"], "TIMESTAMP,ContextTokens", "missing GeneratedTokens"),
        (["2023-11-16 18:00:00,ten,5"], None, "line 2: ContextTokens must be a number"),
        (["yesterday,10,5"], None, "TIMESTAMP does not parse"),
        (["2023-11-16 18:00:00,10"], None, "line 2: expected 3 fields"),
        ([], None, "no rows"),
    ],
)
def test_bad_trace_is_one_line_naming_the_file(
    tmp_path: Path, rows: list[str], header: str | None, message: str
) -> None:
    p = write_csv(tmp_path / "bad.csv", rows, header or "TIMESTAMP,ContextTokens,GeneratedTokens")
    with pytest.raises(InputError, match=message) as e:
        read_trace(p)
    assert "bad.csv" in str(e.value) and "\n" not in str(e.value)


def test_missing_trace_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_trace(tmp_path / "nope.csv")


def test_trace_replay_time_scale_cap_and_clamping(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path / "t.csv",
        [
            "2023-11-16 18:00:10.0000000,100,0",
            "2023-11-16 18:00:12.0000000,0,5",
            "2023-11-16 18:00:16.0000000,50,6",
            "2023-11-16 18:00:20.0000000,50,6",
        ],
    )
    wl = Workload(trace=p, time_scale=2.0, num_requests=3)
    req = build_requests(wl, p, *rngs())
    assert req.num_requests == 3
    assert req.arrival_s.tolist() == [0.0, 1.0, 3.0]  # gaps halved
    assert req.output_tokens.tolist() == [1, 5, 6] and req.prompt_tokens.tolist() == [100, 1, 50]
    assert any("output length < 1" in w for w in req.warnings)
    assert any("prompt length < 1" in w for w in req.warnings)


def test_unsorted_trace_is_sorted_with_a_warning(tmp_path: Path) -> None:
    p = write_csv(
        tmp_path / "t.csv",
        ["2023-11-16 18:00:05.0000000,1,1", "2023-11-16 18:00:01.0000000,2,2"],
    )
    req = build_requests(Workload(trace=p), p, *rngs())
    assert req.arrival_s.tolist() == [0.0, 4.0] and req.prompt_tokens.tolist() == [2, 1]
    assert any("not in time order" in w for w in req.warnings)


def test_modes_offline_and_closed() -> None:
    lengths = {
        "prompt_tokens": LengthDist(dist="constant", value=5),
        "output_tokens": LengthDist(dist="constant", value=3),
    }
    off = build_requests(Workload(mode="offline", num_requests=4, **lengths), None, *rngs())
    assert off.arrival_s.tolist() == [0.0] * 4
    closed = Workload(mode="closed", concurrency=2, num_requests=4, **lengths)
    req = build_requests(closed, None, *rngs())
    assert req.arrival_s is None and req.concurrency == 2


def test_trace_lengths_with_synthetic_arrivals() -> None:
    wl = Workload(
        trace=CODE_TRACE, num_requests=100, arrival=Arrival(process="poisson", rate_per_s=10)
    )
    req = build_requests(wl, CODE_TRACE, *rngs())
    assert req.prompt_tokens[:2].tolist() == [4808, 3180]
    assert req.arrival_s[0] == 0.0 and 5 < req.arrival_s[-1] < 15


@pytest.mark.parametrize(("process", "cv"), [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_arrival_rate_and_burstiness(process: str, cv: float) -> None:
    t = sample_arrivals(Arrival(process=process, rate_per_s=4.0, cv=cv), 200_000, rngs()[0])
    gaps = np.diff(t)
    assert t[0] == 0.0
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.03)


def test_length_distributions() -> None:
    g = rngs()[0]
    logn = sample_lengths(LengthDist(dist="lognormal", mean=500, cv=0.8), 200_000, g)
    assert logn.mean() == pytest.approx(500, rel=0.02)
    assert logn.std() / logn.mean() == pytest.approx(0.8, rel=0.05)
    capped = sample_lengths(LengthDist(dist="lognormal", mean=500, cv=2.0, max=800), 10_000, g)
    assert capped.min() >= 1 and capped.max() == 800
    uni = sample_lengths(LengthDist(dist="uniform", low=3, high=5), 10_000, g)
    assert set(uni.tolist()) == {3, 4, 5}
    assert sample_lengths(LengthDist(dist="constant", value=7), 3, g).tolist() == [7, 7, 7]


def test_deterministic_for_a_seed() -> None:
    wl = Workload(
        num_requests=50,
        arrival=Arrival(process="gamma", rate_per_s=3.0, cv=2.0),
        prompt_tokens=LengthDist(dist="lognormal", mean=100, cv=1.0),
        output_tokens=LengthDist(dist="uniform", low=1, high=99),
    )
    a, b, c = (build_requests(wl, None, *rngs(s)) for s in (1, 1, 2))
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(
        a.prompt_tokens, b.prompt_tokens
    )
    assert not np.array_equal(a.arrival_s, c.arrival_s)
