"""`spectune plan`: capacity with and without SD, replicas, the rate sweep, bad input; the
reported rates hold when simulated long (steady state, keep-up, other seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REPO
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.plan import Planner, plan
from spectune.tuner.space import Config

FAST = ["search.tree_budgets=[]", "search.num_spec_tokens=[0, 1, 2, 4, 6]"]


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    # TPOT SLO tight enough that load, not just the step time, decides it.
    return write_tiny(tmp_path, {"slo": {"ttft_s": 1.0, "tpot_s": 0.008}})


def test_capacity_with_sd_at_least_plain_and_replicas(scen: Path) -> None:
    rs = load_scenario(scen, FAST)
    res = plan(rs, qps=100.0, requests=600, workers=1)
    assert res.max_rate_sd >= res.max_rate_plain > 0
    assert res.replicas_sd == math.ceil(100.0 / res.max_rate_sd)
    assert res.replicas_plain == math.ceil(100.0 / res.max_rate_plain)
    # at the reported maxima the SLOs hold for every seed; the sweep's top rate misses them
    assert all(p.sustains for p in res.checks_sd + res.checks_plain)
    assert [p.seed for p in res.checks_sd] == list(res.seeds) and len(res.seeds) == 3
    p = {pt.rate_per_s: pt for pt in res.points}
    assert p[res.max_rate_sd].best.sustains
    above = [pt for r, pt in p.items() if r > res.max_rate_sd * 1.2]
    assert above and not any(pt.best.sustains for pt in above)


def test_best_config_per_rate(scen: Path) -> None:
    rs = load_scenario(scen, FAST)
    pl = Planner(rs, requests=400, workers=1)
    light = pl.points([5.0])[0]
    # light load: the pick speculates and beats plain decoding on TPOT at the percentile
    assert light.best.config.speculates
    assert light.best.evaluation.value("latency") < light.plain.evaluation.value("latency")
    n = pl.simulations
    assert pl.points([5.0])[0].best is light.best and pl.simulations == n  # memoised


def test_cli_json_and_plot(scen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "cap.png"
    argv = ["plan", str(scen), "--qps", "50", "--requests", "500", "--json", "--plot", str(png)]
    for s in FAST:
        argv += ["--set", s]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["max_rate_per_s"]["sd"] >= d["max_rate_per_s"]["plain"] > 0
    assert d["replicas"]["sd"] == math.ceil(50 / d["max_rate_per_s"]["sd"])
    rates = [r["rate_per_s"] for r in d["rates"]]
    assert rates == sorted(rates) and len(rates) >= 3
    # one percentile everywhere: the tiny scenario's SLOs are at p99, and so are the keys
    assert d["slo_percentile"] == 99 and "tpot_p99_s" in d["rates"][0]["sd"]
    assert [c["seed"] for c in d["checks"]["sd"]] == d["seeds"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_text_output_names_the_percentile(scen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", str(scen), "--requests", "400", "--qps", "30", "--set", "slo.percentile=90"]
    for s in FAST:
        argv += ["--set", s]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "max sustainable rate per replica, plain decoding" in out
    assert "replicas for 30 req/s" in out
    assert "p90 TPOT" in out and "p99" not in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--set", "slo={}"], "plan needs SLOs"),
        (["--qps", "-3"], "--qps"),
        (["--requests", "0"], "--requests"),
        (["--set", "slo.tpot_s=0.00001"], "no arrival rate"),
        (["--objective", "fast"], "unknown objective"),
    ],
)
def test_bad_input_exit_2(
    scen: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(scen), "--requests", "60", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_planner_needs_slo(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="SLOs"):
        Planner(load_scenario(write_tiny(tmp_path, {"slo": {}})))


def test_closed_loop_scenario_is_planned_as_poisson(tmp_path: Path) -> None:
    wl = {
        "mode": "closed",
        "concurrency": 8,
        "num_requests": 80,
        "prompt_tokens": {"dist": "constant", "value": 100},
        "output_tokens": {"dist": "constant", "value": 50},
    }
    scen = write_tiny(tmp_path, {"workload": wl, "slo": {"tpot_s": 0.008}})
    res = plan(load_scenario(scen, FAST), requests=300, workers=1)
    assert res.objective == "latency"  # ranked as an open-loop (Poisson) workload
    assert res.max_rate_sd >= res.max_rate_plain > 0


def test_a_tpot_only_slo_still_needs_the_server_to_keep_up(tmp_path: Path) -> None:
    # A loose TPOT bound and a small batch cap: TPOT stays within the bound at any load (the
    # batch cannot grow), so only "departures keep pace with arrivals" limits the rate.
    scen = write_tiny(
        tmp_path,
        {"slo": {"tpot_s": 1.0}, "serving": {"max_num_seqs": 4, "kv_cache_tokens": 200000}},
    )
    rs = load_scenario(scen, ["search.drafters=[none]"])
    res = plan(rs, requests=1500, workers=1)
    for p in res.checks_plain:
        assert p.steady.completion_ratio >= 0.97 and p.steady.run_completion >= 0.97
    over = Planner(rs, requests=1500, workers=1).probe(res.max_rate_plain * 1.5, Config())
    assert (over.evaluation.metrics["tpot_s"]["p99"] or 0) <= 1.0  # TPOT alone would pass
    assert not over.sustains and over.steady.completion_ratio < 0.97


def _simulate(scen: Path, over: list[str], rate: float, seed: int, capsys) -> dict:
    argv = ["simulate", str(scen), "--json", "--seed", str(seed)]
    sets = [*over, f"workload.arrival={{process: poisson, rate_per_s: {rate!r}}}"]
    sets.append("workload.num_requests=5000")
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_reported_rates_hold_when_simulated_for_5000_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check on a smaller scenario: the Azure conversation trace (long, heavy-
    tailed outputs, so a short run never fills the batch) served by the tiny synthetic
    models. Each reported per-replica rate, simulated with `spectune simulate` for 5,000
    requests, meets the SLOs at the stated percentile and completes >= 97% of the offered
    rate — at the scenario's seed, at the two seeds plan confirmed, and at one it never ran.
    (Before steady-state planning, plan reported 13.1 req/s for plain decoding here, which
    completes 93% with a p90 TTFT of 21 s.)"""
    trace = REPO / "traces" / "azure_llm_2023_conv.csv"
    scen = write_tiny(
        tmp_path,
        {
            "workload": {"mode": "open", "trace": str(trace)},
            "slo": {"ttft_s": 2.0, "tpot_s": 0.02, "percentile": 90},
            "serving": {"max_num_seqs": 64, "max_batched_tokens": 4096, "kv_cache_tokens": 400000},
            "search": {"drafters": ["none", "small"], "num_spec_tokens": [2], "tree_budgets": []},
        },
    )
    assert main(["plan", str(scen), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["requests_per_rate"] == 5000
    for mode, check in (("plain", d["checks"]["plain"][0]), ("sd", d["checks"]["sd"][0])):
        rate = d["max_rate_per_s"][mode]
        k = 0 if check["config"].startswith("none") else int(check["config"].split("k=")[1])
        spec = (
            ["spec.drafter=none"] if k == 0 else ["spec.drafter=small", f"spec.num_spec_tokens={k}"]
        )
        for seed in (*d["seeds"], max(d["seeds"]) + 1):
            m = _simulate(scen, spec, rate, seed, capsys)
            assert m["num_requests"] == 5000
            assert m["ttft_s"]["p90"] <= 2.0, (mode, seed, m["ttft_s"])
            assert m["tpot_s"]["p90"] <= 0.02, (mode, seed, m["tpot_s"])
            assert m["requests_per_s"] >= 0.97 * rate, (mode, seed, m["requests_per_s"], rate)
