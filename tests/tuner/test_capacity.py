"""Capacity grids (`spectune plan --grid`): points built from devices, models and labelled
overrides, bad grids refused with one line, every point planned once in a resumable study
(also by several worker processes), per-GPU figures consistent with the plan of the same
scenario."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import latency_profile_dict, write_yaml
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator.errors import InputError
from spectune.tuner.capacity import GridSettings, load_grid, run_grid_study
from spectune.tuner.plan import plan
from spectune.tuner.worker import local_helpers

FAST = {"search.tree_budgets": [], "search.num_spec_tokens": [0, 2, 4]}


def _layout(tmp: Path) -> Path:
    """hw/<dev>/ folders (fast-gpu, slow-gpu) and scen/scenario.yaml pointing into fast-gpu."""
    scen = tmp / "scen"
    scen.mkdir()
    write_tiny(scen, {"slo": {"ttft_s": 1.0, "tpot_s": 0.008}})
    for dev, base in (("fast-gpu", 5.0), ("slow-gpu", 7.0)):
        d = tmp / "hw" / dev
        d.mkdir(parents=True)
        write_yaml(d / "target.yaml", latency_profile_dict(base_ms=base, per_token_ms=0.04))
        (d / "drafter.yaml").write_text((scen / "drafter.yaml").read_text())
        tp2 = latency_profile_dict(base_ms=base * 0.7, per_token_ms=0.02)
        tp2["model"]["tensor_parallel"] = 2
        write_yaml(d / "target-tp2.yaml", tp2)
    sc = yaml.safe_load((scen / "scenario.yaml").read_text())
    sc["target"]["latency_profile"] = "../hw/fast-gpu/target.yaml"
    sc["drafters"][0]["latency_profile"] = "../hw/fast-gpu/drafter.yaml"
    write_yaml(scen / "scenario.yaml", sc)
    return scen / "scenario.yaml"


def _grid(tmp: Path, axes: dict[str, Any], **extra: Any) -> Path:
    _layout(tmp)
    body = {"schema": "spectune/plan-grid/v1", "base": "scen/scenario.yaml", "requests": 400}
    body.update(extra)
    body["axes"] = {"search": {"fast": FAST}, **axes}
    return write_yaml(tmp / "grid.yaml", body)


def test_points_move_profiles_and_apply_overrides(tmp_path: Path) -> None:
    g = load_grid(
        _grid(
            tmp_path,
            {
                "device": ["fast-gpu", "slow-gpu"],
                "model": ["target", "target-tp2"],
                "load": {"x1": {}, "x2": {"workload.time_scale": 2}},
            },
        )
    )
    assert len(g.points) == 8
    labels = [p.label for p in g.points]
    assert len(set(labels)) == 8 and labels[0] == "search=fast device=fast-gpu model=target load=x1"
    by = {p.label: p for p in g.points}
    p = by["search=fast device=slow-gpu model=target-tp2 load=x2"]
    assert p.gpus_per_replica == 2
    assert p.scenario.target.points[0].latency_ms.p50 == pytest.approx(
        7.0 * 0.7 + 0.02 + 1e-5 * 128
    )
    assert p.scenario.drafters["small"].latency is not None
    assert p.scenario.scenario.workload.time_scale == 2
    assert p.scenario.scenario.search.num_spec_tokens == [0, 2, 4]
    assert by["search=fast device=fast-gpu model=target load=x1"].gpus_per_replica == 1


@pytest.mark.parametrize(
    ("axes", "field", "says"),
    [
        ({"device": ["fast-gpu", "h900"]}, "axes.device.h900", "unknown device 'h900'"),
        ({"model": ["llama-9t"]}, "axes.model.llama-9t", "no profile 'llama-9t' on device"),
        (
            {"model": {"target": {"drafters": {"nope": "drafter"}}}},
            "axes.model.target.drafters.nope",
            "no drafter 'nope'",
        ),
        (
            {"model": {"target": {"drafters": {"small": "missing"}}}},
            "axes.model.target",
            "no profile 'missing' for drafter 'small'",
        ),
        ({"load": [1, 2]}, "axes.load", "mapping of labels"),
        ({"load": {"x": {"workload.rate": 3}}}, "workload", "rate"),
    ],
)
def test_bad_grid_one_line(tmp_path: Path, axes: dict[str, Any], field: str, says: str) -> None:
    path = _grid(tmp_path, axes)
    with pytest.raises(InputError) as e:
        load_grid(path)
    msg = str(e.value)
    assert "grid.yaml" in msg and field in msg and says in msg and "\n" not in msg


def test_bad_grid_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _grid(tmp_path, {"device": ["h900"]})
    assert main(["plan", "--grid", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown device 'h900'" in err and "fast-gpu" in err
    assert main(["plan", "--grid", str(path), "--requests", "500"]) == 2
    assert "set 'requests' in the grid file" in capsys.readouterr().err
    bad = write_yaml(tmp_path / "g2.yaml", {"schema": "spectune/plan-grid/v1", "base": "x.yaml"})
    assert main(["plan", "--grid", str(bad)]) == 2
    assert "axes" in capsys.readouterr().err


def test_grid_plans_each_point_once_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _grid(tmp_path, {"model": ["target", "target-tp2"]}, qps=100)
    grid = load_grid(path)
    store = str(tmp_path / "grid.log")
    out = run_grid_study(grid, GridSettings(storage=store, progress=False))
    assert out.ran == 2 and set(out.points) == {p.label for p in grid.points}
    # a point's figures are those of `spectune plan` on the same scenario
    pt = grid.points[1]
    res = plan(pt.scenario, requests=400, workers=1)
    s = out.points[pt.label]
    assert s["sd"]["max_rate_per_s"] == pytest.approx(res.max_rate_sd)
    assert s["sd"]["gpus_per_1k_req_per_s"] == pytest.approx(2000.0 / res.max_rate_sd)
    assert s["config_at_max"] == res.config_at_max
    # rerun: nothing recomputed, the same table
    again = run_grid_study(grid, GridSettings(storage=store, progress=False))
    assert again.ran == 0 and again.points == out.points
    monkeypatch.chdir(tmp_path)
    png = tmp_path / "grid.png"
    assert (
        main(["plan", "--grid", str(path), "--storage", store, "--json", "--plot", str(png)]) == 0
    )
    js = json.loads(capsys.readouterr().out)
    assert js["ran_here"] == 0 and js["finished"] == 2 and png.stat().st_size > 0
    row = js["rows"][1]
    assert row["for_qps"]["sd"]["gpus"] == math.ceil(100 / row["sd"]["max_rate_per_s"]) * 2
    assert main(["plan", "--grid", str(path), "--storage", store]) == 0
    text = capsys.readouterr().out
    assert "GPUs per 1k req/s (SD)" in text and "2 of 2 points planned (0 here" in text


def test_two_workers_split_the_grid(tmp_path: Path) -> None:
    path = _grid(tmp_path, {"model": ["target", "target-tp2"], "load": {"a": {}, "b": {}}})
    grid = load_grid(path)
    store = str(tmp_path / "grid.log")
    out = run_grid_study(
        grid, GridSettings(storage=store, progress=False, helpers=local_helpers(1))
    )
    assert set(out.points) == {p.label for p in grid.points}
    import optuna

    from spectune.tuner.storage import make_storage

    study = optuna.load_study(study_name=out.study_name, storage=make_storage(store))
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 4 and len({t.params["point"] for t in done}) == 4
    workers = {t.user_attrs["spectune_worker"].split()[1] for t in done}
    assert 1 <= len(workers) <= 2  # both usually take points; never a point twice


def test_a_grid_study_refuses_another_grid(tmp_path: Path) -> None:
    path = _grid(tmp_path, {"model": ["target"]})
    store = str(tmp_path / "grid.log")
    run_grid_study(load_grid(path), GridSettings(storage=store, progress=False))
    body = yaml.safe_load(path.read_text())
    body["requests"] = 500
    write_yaml(path, body)
    with pytest.raises(InputError, match=r"belongs to capacity grid .*grid\.yaml \(1 points\)"):
        run_grid_study(load_grid(path), GridSettings(storage=store, progress=False))


def test_a_grid_killed_mid_run_resumes_without_recomputing(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from spectune.tuner.storage import make_storage

    path = _grid(tmp_path, {"model": ["target", "target-tp2"], "load": {"a": {}, "b": {}}})
    store = str(tmp_path / "grid.log")
    cmd = [sys.executable, "-m", "spectune.cli", "plan", "--grid", str(path), "--storage", store]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    name = "plan-grid-grid"

    def finished() -> list:
        try:
            study = optuna.load_study(study_name=name, storage=make_storage(store))
        except Exception:
            return []
        return [t for t in study.get_trials() if t.state.name == "COMPLETE"]

    deadline = time.monotonic() + 120
    while not finished() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.params["point"]: t.user_attrs["spectune_point"] for t in finished()}
    assert 1 <= len(before) < 4
    out = run_grid_study(load_grid(path), GridSettings(storage=store, progress=False))
    assert set(out.points) == {p.label for p in load_grid(path).points}
    assert out.ran == 4 - len(before)  # the killed run's running point re-run, none twice
    for label, summary in before.items():
        assert out.points[label] == summary
