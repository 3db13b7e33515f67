"""The vLLM validation's plumbing on a fake engine (no vLLM, no waiting): sessions by
engine configuration, calibration runs kept once, interleaved repeats, a server that dies
mid-run (its runs marked failed, finished runs kept, a rerun completing the rest), and the
report. The fake serves requests with a fixed per-token time and accepts drafts with a
fixed probability; it reports them the way the vLLM adapter does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from spectune.profiler.live import (
    EngineFailed,
    LiveEngine,
    LiveWorkload,
    StepLog,
    timed_result,
)
from spectune.simulator.schema import Slo
from spectune.validation.matrix import Entry
from spectune.validation.report import write_report
from spectune.validation.settings import ValidateSettings
from spectune.validation.vllm_pipeline import run_vllm_validation
from spectune.validation.vllm_report import markdown

REPO = Path(__file__).resolve().parents[2]
SCENARIO = """\
schema: spectune/scenario/v1
target:
  name: stdlib-byte-target
  latency_profile: {repo}/hwprofiles/cpu-amd-epyc-1t/stdlib-byte-target.yaml
drafters:
  - name: byte-drafter
    kind: draft_model
    latency_profile: {repo}/hwprofiles/cpu-amd-epyc-1t/stdlib-byte-drafter.yaml
    acceptance:
      profile: {repo}/acceptance/stdlib-byte-target__stdlib-byte-drafter__stdlib__t0.yaml
  - name: ngram
    kind: ngram
    prompt_lookup_min: 1
    prompt_lookup_max: 3
    acceptance: {{per_position: [0.6, 0.5]}}
workload:
  mode: offline
  num_requests: 8
  prompt_tokens: {{dist: constant, value: 40}}
  output_tokens: {{dist: constant, value: 16}}
serving: {{engine: vllm}}
search:
  drafters: [none, byte-drafter, ngram]
  num_spec_tokens: [0, 1, 2, 3]
"""


class FakeEngine(LiveEngine):
    """Serves a workload on ``max_num_seqs`` slots at 2 ms per token, drafts accepted with
    probability 0.6; ``fail_at``: the run number (counted over all fakes) that raises."""

    name = "fake"
    runs = 0
    fail_at: int | None = None
    started = 0

    def __init__(self, settings):
        self.settings = settings
        self.k = settings.spec.k if settings.spec else 0
        self.on = False

    def start(self):
        FakeEngine.started += 1
        self.on = True

    def stop(self):
        self.on = False

    def run(self, workload: LiveWorkload, on_finish=None):
        assert self.on
        FakeEngine.runs += 1
        if FakeEngine.fail_at is not None and FakeEngine.runs == FakeEngine.fail_at:
            raise EngineFailed("vLLM server died during a run (rc -9): simulated")
        req = workload.requests
        n = req.num_requests
        rng = np.random.default_rng(workload.seed)
        al = 1.0 + (0.6 * (1 - 0.6**self.k) / 0.4 if self.k else 0.0)
        tpot = 0.002 * (1 + 0.1 * self.k) / al
        slots = [0.0] * self.settings.max_num_seqs
        arrival = np.zeros(n) if req.arrival_s is None else req.arrival_s.copy()
        first, finish = np.zeros(n), np.zeros(n)
        for i in range(n):
            s = int(np.argmin(slots))
            if req.arrival_s is None and i >= (req.concurrency or 1):
                arrival[i] = finish[i - (req.concurrency or 1)]
            start = max(arrival[i], slots[s])
            first[i] = start + 0.01
            finish[i] = first[i] + (req.output_tokens[i] - 1) * tpot
            slots[s] = finish[i]
        outputs = [[int(x) for x in rng.integers(0, 256, int(m))] for m in req.output_tokens]
        requests = []
        drafts = accepted = 0
        for m in req.output_tokens.tolist():
            acc = []
            left = m - 1
            while self.k and left > 0:
                a = int(np.sum(np.cumprod(rng.random(self.k) < 0.6)))
                acc.append(a)
                left -= a + 1
            drafts += len(acc)
            accepted += sum(acc)
            sd = (
                {"per_step_accepted": acc, "per_step_drafted": [self.k] * len(acc)}
                if self.k
                else None
            )
            requests.append({"output_tokens": m, "server": {}, "speculative_decoding": sd})
        res = timed_result(
            workload,
            arrival,
            first,
            finish,
            outputs,
            steps=StepLog(),
            slo=Slo(),
            config={"drafter": "fake"},
            nodes=self.k,
            depth=self.k,
            decode_steps=drafts if self.k else int((req.output_tokens - 1).sum()),
            accepted_tokens=accepted,
            max_num_seqs=self.settings.max_num_seqs,
        )
        res.requests = requests
        return res

    def pids(self):
        return [os.getpid()]


def no_profiles(rs, base, report_dir, quick, version, progress, use_scenario=False):
    return rs, ["profiles: the scenario's (test)"], {}


@pytest.fixture
def scenario(tmp_path):
    p = tmp_path / "scen.yaml"
    p.write_text(SCENARIO.format(repo=REPO))
    return p


def settings(scenario: Path, report: Path, **kw) -> ValidateSettings:
    entries = (
        Entry("offline", "none", max_num_seqs=4),
        Entry("offline", "ngram", k=2, max_num_seqs=4),
        Entry("closed", "ngram", k=2, max_num_seqs=4),
        Entry("offline", "byte-drafter", k=3, max_num_seqs=4),
    )
    base = dict(
        scenario=str(scenario),
        report_dir=str(report),
        models_dir=str(REPO / "models"),
        prompts=str(REPO / "examples" / "prompts" / "stdlib.txt"),
        engine="vllm",
        repeats=3,
        sweeps=2,
        tuner=False,
        entries=entries,
        quick=True,
        progress=False,
        retries=0,
    )
    base.update(kw)
    return ValidateSettings(**base)


def test_sessions_calibrate_once_interleave_and_report(scenario, tmp_path):
    FakeEngine.runs, FakeEngine.started, FakeEngine.fail_at = 0, 0, None
    report = tmp_path / "rep"
    res = run_vllm_validation(
        settings(scenario, report), make_engine=FakeEngine, profiles=no_profiles
    )
    # 3 engine configurations (offline and closed n-gram k=2 share one), 2 sweeps
    assert res["environment"]["engine_configs"] == 3
    assert FakeEngine.started == 6
    # runs: 4 entries x 3 repeats + one calibration run per session
    assert FakeEngine.runs == 12 + 6
    assert len(list((report / "calibration-vllm").glob("*.json"))) == 3 + 1  # + key.json
    rows = {r["id"]: r for r in res["configs"]}
    assert all(r["repeats"] == 3 for r in rows.values())
    lines = [json.loads(x) for x in (report / "runs.jsonl").read_text().splitlines()[1:]]
    sweep_of = [r["rep"] for r in lines if r["id"] == "offline/none/plain/mns4"]
    assert sweep_of == [0, 2, 1]  # repeats 0 and 2 in sweep 0, repeat 1 in sweep 1
    assert res["acceptance"] and all(
        len(v) == 2 or len(v) == 3 for v in res["acceptance"].values() if v
    )
    assert res["lossless"]["configs"] == 2  # offline SD entries have a plain counterpart
    assert res["summary"]["num_configs"] == 4
    assert "disturbed" in res["summary"] and res["noise_floor"]["runs"] > 0
    paths = write_report(res, report, render=markdown)
    text = paths["md"].read_text()
    assert "against vLLM" in text and "Noise and interference" in text
    assert (report / "calibrated-scenario.yaml").is_file()


def test_a_dying_server_fails_its_runs_and_a_rerun_completes(scenario, tmp_path):
    FakeEngine.runs, FakeEngine.started, FakeEngine.fail_at = 0, 0, 5
    report = tmp_path / "rep"
    s = settings(scenario, report, sweeps=1)
    res = run_vllm_validation(s, make_engine=FakeEngine, profiles=no_profiles)
    assert any("died during a run" in n for n in res["notes"])
    lines = [json.loads(x) for x in (report / "runs.jsonl").read_text().splitlines()[1:]]
    failed = [r for r in lines if r["kind"] == "failed"]
    done = [r for r in lines if r["kind"] == "live"]
    assert failed and done
    # the rerun runs only what is missing: the failed session's runs and its calibration
    FakeEngine.runs, FakeEngine.fail_at = 0, None
    res2 = run_vllm_validation(s, make_engine=FakeEngine, profiles=no_profiles)
    assert FakeEngine.runs == len(failed) + 1
    assert all(r["repeats"] == 3 for r in res2["configs"])


def test_the_tuners_pick_runs_live_against_the_best(scenario, tmp_path):
    FakeEngine.runs, FakeEngine.started, FakeEngine.fail_at = 0, 0, None
    entries = (
        Entry("offline", "none", max_num_seqs=8),
        Entry("offline", "ngram", k=1, max_num_seqs=8),
        Entry("offline", "ngram", k=3, max_num_seqs=8),
    )
    s = settings(
        scenario,
        tmp_path / "rep",
        entries=entries,
        tuner=True,
        tuner_repeats=2,
        sweeps=1,
        repeats=1,
        tuner_trials=12,
    )
    res = run_vllm_validation(s, make_engine=FakeEngine, profiles=no_profiles)
    t = res["tuner"]
    assert t is not None and t["simulations"] > 0
    assert (
        t["best_live_id"]
        == max(res["configs"], key=lambda r: r["measured"]["throughput_tok_per_s"])["id"]
    )
    assert t["pick_measured_tok_per_s"] > 0 and t["ratio"] > 0
    assert res["summary"]["tuner_pick_ratio"] == t["ratio"]
