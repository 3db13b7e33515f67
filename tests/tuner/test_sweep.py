"""`spectune sweep`: plain vs each drafter across load, crossovers where speculation stops
paying; the runs are the simulator's own (a level's run equals `simulate` at that load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import latency_profile_dict, write_yaml
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator import load_scenario, simulate
from spectune.simulator.errors import InputError
from spectune.tuner.sweep import level_scenario, sweep

FAST = ["search.tree_budgets=[]", "search.num_spec_tokens=[0, 1, 2, 4]"]


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)


def test_load_sweep_finds_where_speculation_stops_paying(scen: Path) -> None:
    # a steep per-token cost: verifying k + 1 tokens for 64 sequences is compute-bound
    write_yaml(scen.parent / "target.yaml", latency_profile_dict(base_ms=5.0, per_token_ms=0.5))
    rs = load_scenario(scen, FAST)
    res = sweep(rs, "batch", [1, 4, 64], requests=120, workers=1)
    # per level: plain, 2 drafters x 3 ks, 2 drafters x 3 policies at k = 4
    assert res.simulations == 3 * (1 + 2 * 3 + 2 * 3) and res.ks == [1, 2, 4]
    thr = res.metrics[0]
    # a lone sequence is memory-bound: the draft model pays; at batch 64 verify work
    # dominates and it no longer does
    lv1, lv64 = res.levels[0], res.levels[-1]
    assert res.speedup(lv1, "small", thr) > 1.0
    assert res.speedup(lv64, "small", thr) <= 1.0
    assert res.crossover("small", thr) in (4.0, 64.0)
    # the best run per drafter is the best of its ks, and a run equals `simulate`
    best = res.best(lv1, "small", thr)
    assert thr.of(best) == max(thr.of(e) for e in lv1.runs["small"])
    base = level_scenario(rs, "batch", 1, 120).with_spec(
        drafter="small", num_spec_tokens=best.config.num_spec_tokens, tree=None
    )
    assert simulate(base, rs.scenario.seed).metrics["throughput_tok_per_s"] == thr.of(best)
    # a policy's line is its own run at the largest k, and a run equals `simulate` too
    sched = res.best(lv64, "small", thr, "schedule")
    assert sched.config.policy == "schedule" and sched.config.num_spec_tokens == 4
    assert res.crossover("small", thr, "schedule") in (None, 1.0, 4.0, 64.0)
    spec = sched.metrics["config"]["policy"]
    base = level_scenario(rs, "batch", 64, 120).with_spec(
        drafter="small", num_spec_tokens=4, tree=None, policy=spec
    )
    assert simulate(base, rs.scenario.seed).metrics["throughput_tok_per_s"] == thr.of(sched)


def test_open_loop_load_scales_the_arrival_rate(scen: Path) -> None:
    rs = load_scenario(scen, FAST)
    at2 = level_scenario(rs, "load", 2.0, 50)
    assert at2.scenario.workload.arrival.rate_per_s == 2 * rs.scenario.workload.arrival.rate_per_s
    assert at2.scenario.workload.num_requests == 50
    closed = level_scenario(rs, "concurrency", 3, 50)
    assert closed.scenario.workload.mode == "closed" and closed.scenario.workload.concurrency == 3


def test_cli_text_json_plot(scen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "s.png"
    argv = ["sweep", str(scen), "--concurrency", "1,8", "--requests", "60", "--plot", str(png)]
    for s in FAST:
        argv += ["--set", s]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "where speculation stops paying" in text and "output tok/s" in text
    assert png.stat().st_size > 0
    assert main([*argv[:-2], "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["axis"] == "concurrency" and len(js["levels"]) == 2
    assert set(js["crossover"]) == {"small", "ngram"}
    assert set(js["policy_crossover"]["small"]) == {"schedule", "sglang_adaptive", "goodput"}
    assert main([*argv[:-2], "--json", "--policies", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["policy_crossover"]["small"] == {}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--load", "1,x"], "comma-separated numbers"),
        (["--batch", "0"], "positive integer"),
        (["--concurrency", "1.5"], "positive integer"),
        (["--load", "1", "--requests", "0"], "must be > 0"),
        (["--load", "1", "--policies", "fast"], "unknown policy"),
    ],
)
def test_bad_input_one_line(
    scen: Path, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", str(scen), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_load_needs_an_open_loop(tmp_path: Path) -> None:
    scen = write_tiny(
        tmp_path,
        {
            "workload": {
                "mode": "offline",
                "num_requests": 10,
                "prompt_tokens": {"dist": "constant", "value": 10},
                "output_tokens": {"dist": "constant", "value": 10},
            }
        },
    )
    with pytest.raises(InputError, match="--concurrency or --batch"):
        sweep(load_scenario(scen), "load", [1, 2], requests=10, workers=1)
