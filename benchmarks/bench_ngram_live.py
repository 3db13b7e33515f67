"""n-gram prompt lookup: predicted vs measured live speedup over plain decoding, with and
without the no-match rule (a program, not a test).

A lookup that finds no earlier occurrence of the last n tokens proposes nothing: that step
costs no draft time and verifies one token. Before the rule the simulator priced every
n-gram step as drafting k (verifying k + 1). With a window of ``--window MIN,MAX`` tokens
(default 4,6) about half the steps a k = 4 engine visits find no match on these prompts.

- Calibration (never the scored prompts; the split of bench_acceptance_live.py): the
  n-gram acceptance profile (trajectories, match probability) on the calibration prompts,
  and the engine's host overhead per step from plain-decoding runs on them.
- Live: spectune's engine at batch ``--batch`` on the scored prompts: plain decoding and
  n-gram chains k = 4, 8, repeats interleaved (plain, k4, k8, plain, ...); medians.
- Predicted: the DES (shipped latency profile of the target, ``prefill: separate``,
  ``attention_context: max`` as the live engine runs, the calibrated overhead) for the
  same requests, ``after`` = the profile as measured, ``before`` = the same trajectories
  with every step drafting k (the old rule). Compared: speedup over plain decoding,
  a ratio measured within one interleaved round (the machine's load cancels, mostly).

    .venv/bin/python benchmarks/bench_ngram_live.py [--prompts 32] [--repeats 5] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_acceptance_live import REPO, split_prompts


def scenario(profile: Path, trace: Path, batch: int, overhead_ms: float, k: int):
    from spectune.simulator.scenario import resolve_scenario
    from spectune.simulator.schema import Scenario, validate_model

    data = {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "hwprofiles/cpu-amd-epyc-1t/stdlib-byte-target.yaml"},
        "drafters": [
            {
                "name": "ngram",
                "kind": "ngram",
                "acceptance": {"profile": str(profile)},
                # local-cpu.yaml's measured lookup cost
                "draft_ms_per_token": 0.01,
                "step_overhead_per_seq_ms": 0.05,
            }
        ],
        "workload": {"mode": "closed", "concurrency": batch, "trace": str(trace)},
        "serving": {
            "max_num_seqs": batch,
            "kv_cache_tokens": 1_000_000,
            "prefill": "separate",
            "attention_context": "max",
            "step_overhead_ms": overhead_ms,
        },
        "spec": {"drafter": "ngram" if k else "none", "num_spec_tokens": k},
    }
    return resolve_scenario(validate_model(Scenario, data, "bench"), REPO, "bench")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--window", default="4,6", help="n-gram lengths MIN,MAX")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ks", default="4,8")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from spectune.profiler.measure.acceptance import DrafterSpec, build_profile, measure_acceptance
    from spectune.profiler.native.drafters import NgramDrafter
    from spectune.profiler.native.engine import SpecEngine
    from spectune.profiler.native.generate import generate
    from spectune.profiler.runtime.specs import load_model
    from spectune.simulator import simulate
    from spectune.simulator.schema import dump_yaml

    t0 = time.perf_counter()
    lo, hi = (int(x) for x in args.window.split(","))
    ks = [int(x) for x in args.ks.split(",")]
    cal_txt, eval_txt = split_prompts(args.prompts)
    cal = [list(t.encode()) for t in cal_txt]
    scored = [list(t.encode()) for t in eval_txt]
    target = load_model(REPO / "models/stdlib-byte-target", dtype="bf16").model
    work = Path(tempfile.mkdtemp(prefix="bench_ngram_"))

    # calibration: acceptance and host overhead, on the calibration prompts only
    spec = DrafterSpec("ngram", f"ngram{lo}-{hi}", ngram_min_n=lo, ngram_max_n=hi)
    with torch.inference_mode():
        reqs, _ = measure_acceptance(target, spec, cal, 0.0, 8, 8, args.new_tokens + 8)
    prof = build_profile(reqs, "stdlib-byte-target", spec, "calibration", 0.0, 8, "bench")
    after = work / "after.yaml"
    dump_yaml(prof, after)
    before = work / "before.yaml"
    old = [t.model_copy(update={"drafted": None}) for t in prof.acceptance.trajectories]
    acc_old = prof.acceptance.model_copy(update={"trajectories": old, "match_probability": None})
    dump_yaml(prof.model_copy(update={"acceptance": acc_old}), before)

    max_len = 512 + args.new_tokens + 16

    def run(k: int, prompts: list[list[int]]):
        drafter = NgramDrafter(lo, hi) if k else None
        eng = SpecEngine(target, drafter, k=k, max_batch=args.batch, max_len=max_len)
        with torch.inference_mode():
            generate(eng, prompts[:1], 4)  # warm-up
            return generate(eng, prompts, args.new_tokens)

    plain_cal = [run(0, cal[: max(8, args.prompts // 4)]) for _ in range(2)]
    overhead = statistics.median(r.stats.to_dict()["overhead_ms_per_step"] for r in plain_cal)

    # live, interleaved
    live: dict[int, list] = {k: [] for k in [0, *ks]}
    for _ in range(args.repeats):
        for k in live:
            live[k].append(run(k, scored))
    trace = work / "scored.jsonl"
    trace.write_text(
        "".join(
            json.dumps({"prompt_tokens": len(p), "output_tokens": args.new_tokens}) + "\n"
            for p in scored
        )
    )
    pred: dict[str, dict[int, float]] = {"before": {}, "after": {}}
    for name, path in (("before", before), ("after", after)):
        for k in live:
            rs = scenario(path, trace, args.batch, overhead, k)
            pred[name][k] = simulate(rs).metrics["throughput_tok_per_s"]

    tok = {k: statistics.median(r.tok_per_s for r in rs) for k, rs in live.items()}
    print(
        f"n-gram window {lo}..{hi}, batch {args.batch}, {len(scored)} scored prompts x "
        f"{args.new_tokens} tokens (bf16, 1 torch thread), {args.repeats} interleaved repeats; "
        f"calibration on {len(cal)} other prompts: match probability "
        f"{prof.acceptance.match_probability} over all positions, host overhead "
        f"{overhead:.2f} ms/step (plain runs)"
    )
    print(f"live plain decoding: {tok[0]:.1f} tok/s (median); predicted {pred['after'][0]:.1f}")
    print(
        f"\n{'config':<10}{'miss/step':>10}{'live tok/s':>11}{'speedup':>9}{'range':>13}"
        f"{'before':>8}{'err':>8}{'after':>8}{'err':>8}"
    )
    for k in ks:
        speed = [r.tok_per_s / p.tok_per_s for r, p in zip(live[k], live[0], strict=True)]
        med = statistics.median(speed)
        st = live[k][0].stats
        miss = 1.0 - st.num_drafts / max(st.num_seq_steps, 1)
        b = pred["before"][k] / pred["before"][0]
        a = pred["after"][k] / pred["after"][0]
        print(
            f"ngram k={k:<4}{miss:10.2f}{tok[k]:11.1f}{med:9.3f}  {min(speed):.2f}-{max(speed):.2f}"
            f"{b:8.3f}{100 * (b - med) / med:+7.1f}%{a:8.3f}{100 * (a - med) / med:+7.1f}%"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} on 2 CPUs")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
