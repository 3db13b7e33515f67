"""`spectune recommend`: the pipeline, memo, pruning, physics of k vs load, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import optuna
import pytest
from conftest import latency_profile_dict, write_yaml
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator import load_scenario, simulate
from spectune.tuner import study as st
from spectune.tuner.objective import Evaluator, Screen, TrialObjective, rank, slo_violation
from spectune.tuner.schedule import StepCosts
from spectune.tuner.search import SearchSettings, run_search
from spectune.tuner.space import Config, SearchDims, grid


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny(tmp_path)


def test_text_report(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(tiny), "--trials", "10"]) == 0
    out = capsys.readouterr().out
    assert "recommended:" in out
    assert "plain decoding" in out and "k=5 chain" in out
    assert "how sure:" in out
    assert "batch-size schedule" in out or "tree" in out


def test_json_report_is_consistent(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(tiny), "--trials", "12", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["objective"] == "latency"  # auto: open-loop workload
    assert d["feasible"] and d["recommendation"]["meets_slos"]
    plain = next(c for c in d["comparisons"] if c["label"] == "plain decoding")
    best_tpot = d["recommendation"]["metrics"]["tpot_s"]["p99"]
    assert best_tpot <= plain["metrics"]["tpot_s"]["p99"]
    assert d["search"]["trials"] == 12
    # memo: finalists, plain, defaults reused; + 3 policy rows
    assert d["search"]["simulations"] <= 12 + 6 + 3
    assert 0 < d["confidence"]["relative_min"] <= 1.0 <= d["confidence"]["relative_max"] * 1.2


def test_exhaustive_evaluates_every_config_once(tiny: Path) -> None:
    rs = load_scenario(tiny)
    out = run_search(rs, SearchSettings(exhaustive=True, band_samples=0))
    configs = grid(SearchDims.from_scenario(rs))
    assert out.trials == out.grid_size == len(configs)
    assert {e.config for e in out.searched} == set(configs)
    assert out.pruned == 0
    # each distinct effective config simulated once (a tree that comes out as a chain
    # shares the chain's key); plain, k=5 and the scenario's spec are grid points too;
    # the policy rows (schedule, SGLang adaptive, goodput) are not in this fixed-k grid
    keys = {out.evaluator.key(c) for c in configs}
    keys |= {out.evaluator.key(e.config) for e in out.defaults.values()}
    assert out.simulations == len(keys)
    assert out.best == rank(out.finalists, "latency")[0]


def test_memo_never_resimulates_duplicates(tiny: Path) -> None:
    rs = load_scenario(tiny, ["search.tree_budgets=[]", "search.drafters=[none, small]"])
    dims = SearchDims.from_scenario(rs)
    ev = Evaluator(rs)
    st.quiet_optuna()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    st.run(study, TrialObjective(ev, dims, "latency"), 25, progress=False)
    distinct = {t.user_attrs["config_key"] for t in study.trials}
    assert len(grid(dims)) == 7 and len(distinct) <= 7
    assert ev.n_simulations == len(distinct)
    assert sum(t.user_attrs["cached"] for t in study.trials) == 25 - len(distinct)


def test_screen_prunes_drafters_that_cannot_pay(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path)
    # A "draft model" as slow as the target: speculation loses even at batch 1.
    write_yaml(tmp_path / "drafter.yaml", latency_profile_dict(base_ms=5.0, per_token_ms=0.04))
    rs = load_scenario(scen, ["search.drafters=[none, small]", "search.tree_budgets=[]"])
    dims = SearchDims.from_scenario(rs)
    ev = Evaluator(rs)
    costs = StepCosts.from_scenario(rs)
    assert costs.speedup(1, "small", 3) < 1.0
    screen = Screen(costs, ev.evaluate(Config()), "latency", plain_searched=True)
    st.quiet_optuna()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    st.run(study, TrialObjective(ev, dims, "latency", screen=screen), 12, progress=False)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all("cannot beat plain decoding" in t.user_attrs["pruned_by"] for t in pruned)
    assert ev.n_simulations == 1  # only plain decoding was simulated
    assert all(t.params["drafter"] == "small" for t in pruned)


@pytest.mark.slow
def test_chosen_k_does_not_increase_with_load(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    ks = []
    for rate in (2, 20, 60, 150, 400):
        rs = load_scenario(
            scen,
            [
                f"workload.arrival.rate_per_s={rate}",
                "workload.num_requests=300",
                "search.drafters=[none, small]",
                "search.tree_budgets=[]",
                "search.num_spec_tokens=[0, 1, 2, 3, 4, 5, 6, 7, 8]",
            ],
        )
        out = run_search(rs, SearchSettings(exhaustive=True, band_samples=0))
        ks.append(out.best.config.num_spec_tokens)
    assert all(a >= b for a, b in itertools.pairwise(ks)), ks
    assert ks[0] > ks[-1], ks  # light load speculates deeper than heavy load


def test_slo_violation_rule() -> None:
    from spectune.simulator.schema import Slo

    m = {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.2}}
    assert slo_violation(m, Slo()) == -1.0
    assert slo_violation(m, Slo(ttft_s=2.0, tpot_s=0.1)) == pytest.approx(1.0)
    assert slo_violation(m, Slo(ttft_s=2.0, tpot_s=0.4)) == pytest.approx(-0.5)


def test_pareto_front_and_plot(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "front.png"
    assert (
        main(["recommend", str(tiny), "--pareto", "--trials", "16", "--json", "--plot", str(png)])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    front = d["pareto_front"]
    assert front
    for a in front:  # mutually non-dominated
        for b in front:
            assert not (
                b["throughput_tok_per_s"] > a["throughput_tok_per_s"]
                and b["tpot_p99_s"] < a["tpot_p99_s"]
            )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_resumes_in_process(tiny: Path, tmp_path: Path) -> None:
    journal = str(tmp_path / "j.log")
    rs = load_scenario(tiny)
    s = SearchSettings(trials=6, storage=journal, study_name="r", band_samples=0)
    first = run_search(rs, s)
    again = run_search(
        rs, SearchSettings(trials=10, storage=journal, study_name="r", band_samples=0)
    )
    assert (first.trials, again.trials) == (6, 10)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--objective", "speed"], "unknown objective"),
        (["--set", "search.drafters=[]"], "search space is empty"),
        (["--storage", "sqlite:////no/such/dir/x.db"], "--storage"),
        (["--storage", "/no/such/dir/journal.log"], "does not exist"),
        (["--trials", "0"], "--trials"),
        (["--exhaustive", "--pareto"], "choose one"),
        (["--set", "search.drafters=[none, nope]"], "unknown drafter"),
    ],
)
def test_bad_input_one_line_exit_2(
    tiny: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", str(tiny), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spectune: error:")
    assert needle in err
    assert "Traceback" not in err


def test_unmeetable_slo_prints_closest_then_exit_2(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", str(tiny), "--set", "slo.tpot_s=0.0001", "--trials", "6"]) == 2
    cap = capsys.readouterr()
    assert "closest config (none meets the SLOs):" in cap.out
    assert cap.err.count("\n") == 1
    assert "no configuration meets the SLOs; the closest is" in cap.err


def test_finalists_match_direct_simulation(tiny: Path) -> None:
    rs = load_scenario(tiny)
    out = run_search(rs, SearchSettings(trials=8, band_samples=0))
    direct = simulate(out.evaluator.scenario_for(out.best.config), rs.scenario.seed)
    assert direct.metrics["tpot_s"] == out.best.metrics["tpot_s"]


def test_one_percentile_everywhere(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The SLOs at p90: the objective, the Pareto front's keys and the table read p90 TPOT.
    argv = ["recommend", str(tiny), "--set", "slo.percentile=90", "--pareto", "--trials", "10"]
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["slo_percentile"] == 90 and d["objective_metric"] == "tpot_p90_s"
    assert all("tpot_p90_s" in e and "tpot_p99_s" not in e for e in d["pareto_front"])
    best = d["recommendation"]["metrics"]["tpot_s"]["p90"]
    assert all(f["value"] >= best for f in d["finalists"] if f["meets_slos"])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "p90 TPOT" in out and "p99" not in out


def test_recommend_help_names_the_slo_percentile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    out = capsys.readouterr().out
    assert "slo.percentile" in out and "p99 TPOT" not in out


def test_band_and_front_come_from_the_final_fidelity(tiny: Path) -> None:
    rs = load_scenario(tiny)
    s = SearchSettings(trials=10, search_requests=40, pareto=True, band_samples=2)
    out = run_search(rs, s)
    assert (out.search_requests, out.final_requests) == (40, 120)
    assert out.band["fidelity_requests"] == 120
    finals = {e.key: e for e in out.finalists}
    for e in out.pareto_front:  # the front's figures are the final-fidelity runs'
        assert e.num_requests == 120 and finals[e.key] is e
    # the band's nominal is the pick's final-fidelity value
    lo, hi = out.band["value_min"], out.band["value_max"]
    assert lo <= out.band["value_median"] <= hi


def test_narrow_axis_is_reported() -> None:
    from spectune.tuner.plots import narrow_span

    assert narrow_span([60.66, 60.70, 60.74]) == (60.66, 60.74)
    assert narrow_span([50.0, 60.0]) is None
    assert narrow_span([1.0]) is None
