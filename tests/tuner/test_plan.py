"""`spectune plan`: capacity with and without SD, replicas, the rate sweep, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.plan import Planner, plan

FAST = ["search.tree_budgets=[]", "search.num_spec_tokens=[0, 1, 2, 4, 6]"]


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    # TPOT SLO tight enough that load, not just the step time, decides it.
    return write_tiny(tmp_path, {"slo": {"ttft_s": 1.0, "tpot_s": 0.008}})


def test_capacity_with_sd_at_least_plain_and_replicas(scen: Path) -> None:
    rs = load_scenario(scen, FAST)
    res = plan(rs, qps=100.0, requests=150, iterations=4, sweep=3)
    assert res.max_rate_sd >= res.max_rate_plain > 0
    assert res.replicas_sd == math.ceil(100.0 / res.max_rate_sd)
    assert res.replicas_plain == math.ceil(100.0 / res.max_rate_plain)
    # at the reported maxima the SLOs hold; the bracket's upper end misses them
    p = {pt.rate_per_s: pt for pt in res.points}
    assert p[res.max_rate_sd].best.feasible
    assert p[res.max_rate_plain].plain.feasible
    above = [pt for r, pt in p.items() if r > res.max_rate_sd * 1.2]
    assert above and not any(pt.best.feasible for pt in above)


def test_best_config_per_rate(scen: Path) -> None:
    rs = load_scenario(scen, FAST)
    pl = Planner(rs, requests=100)
    light = pl.at(5.0)
    # light load: the pick speculates and beats plain decoding on p99 TPOT
    assert light.best.config.speculates
    assert light.best.value("latency") < light.plain.value("latency")
    assert pl.at(5.0) is light  # memoised per rate


def test_cli_json_and_plot(scen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "cap.png"
    argv = ["plan", str(scen), "--qps", "50", "--requests", "120", "--json", "--plot", str(png)]
    for s in FAST:
        argv += ["--set", s]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["max_rate_per_s"]["sd"] >= d["max_rate_per_s"]["plain"] > 0
    assert d["replicas"]["sd"] == math.ceil(50 / d["max_rate_per_s"]["sd"])
    rates = [r["rate_per_s"] for r in d["rates"]]
    assert rates == sorted(rates) and len(rates) >= 5
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_text_output(scen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", str(scen), "--requests", "100", "--qps", "30"]
    for s in FAST:
        argv += ["--set", s]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "max sustainable rate per replica, plain decoding" in out
    assert "replicas for 30 req/s" in out


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
    res = plan(load_scenario(scen, FAST), requests=80, iterations=2, sweep=2)
    assert res.objective == "latency"  # ranked as an open-loop (Poisson) workload
    assert res.max_rate_sd >= res.max_rate_plain > 0
