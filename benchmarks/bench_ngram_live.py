"""n-gram prompt lookup: predicted vs measured live speedup over plain decoding, with and
without the no-match rule (a program, not a test).

A lookup that finds no earlier occurrence of the last n tokens proposes nothing: that step
costs no draft time and verifies one token. Before the rule the simulator priced every
n-gram step as drafting k (verifying k + 1). With a window of ``--window MIN,MAX`` tokens
(default 4,6) about half the steps a k = 4 engine visits find no match on these prompts.

- Calibration (never the scored prompts; the split of bench_acceptance_live.py): the
  n-gram acceptance profile (trajectories, match probability) on the calibration prompts;
  on them too, the engine's host overhead per step and its forward time relative to the
  latency profile (plain-decoding runs), and the lookup's host time per sequence-step
  (an n-gram k = 2 run: a lookup runs at every step, a miss included).
- Live, in rounds (the load drifts): each round calibrates (below) then runs spectune's
  engine at batch ``--batch`` on the scored prompts: plain decoding and n-gram chains
  k = 4, 8; a round's prediction uses that round's calibration.
- Predicted: the DES (shipped latency profile of the target, ``prefill: separate``,
  ``attention_context: max`` as the live engine runs; its forwards scaled to the plain
  runs' measured forward time, the plain runs' host overhead per step) for the
  same requests, ``after`` = the profile as measured, ``before`` = the same trajectories
  with every step drafting k (the old rule). Compared: speedup over plain decoding (a
  ratio within one round: the load cancels, mostly); reported the median over rounds of
  |predicted / measured − 1|.

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

PROFILE = "hwprofiles/cpu-amd-epyc-1t/stdlib-byte-target.yaml"


class Scaled:
    """A latency model with every forward scaled by one factor."""

    def __init__(self, model, factor: float):
        self.model, self.factor = model, factor

    def forward_ms(self, batch: int, query_tokens: int, context_tokens: float) -> float:
        return self.factor * self.model.forward_ms(batch, query_tokens, context_tokens)


def scenario(profile: Path, trace: Path, batch: int, overhead_ms: float, lookup_ms: float, k: int):
    from spectune.simulator.scenario import resolve_scenario
    from spectune.simulator.schema import Scenario, validate_model

    data = {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": PROFILE},
        "drafters": [
            {
                "name": "ngram",
                "kind": "ngram",
                "acceptance": {"profile": str(profile)},
                "step_overhead_per_seq_ms": lookup_ms,
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
    from spectune.simulator.latency import LatencyModel
    from spectune.simulator.schema import dump_yaml, load_latency_profile

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

    cal_plain = cal[: max(8, args.prompts // 4)]
    lat = LatencyModel.from_profile(load_latency_profile(REPO / PROFILE))
    ctx = float(np.mean([len(p) for p in cal_plain])) + args.new_tokens / 2
    trace = work / "scored.jsonl"
    trace.write_text(
        "".join(
            json.dumps({"prompt_tokens": len(p), "output_tokens": args.new_tokens}) + "\n"
            for p in scored
        )
    )

    def calibrate() -> tuple[float, float, float]:
        """(host overhead ms/step, forward scale, lookup ms per sequence-step) from runs on
        the calibration prompts: the profile was timed in thread CPU time on a quiet
        machine, live steps run in wall time on a shared one, so its forwards are scaled
        by live / profiled plain decode forwards; the lookup runs for every sequence at
        every step, a miss included (it tries every n before giving up): the draft time and
        the host work an n-gram k = 2 run adds over plain decoding."""
        plain = run(0, cal_plain).stats.to_dict()
        ng = run(2, cal_plain).stats.to_dict()
        scale = plain["verify_ms_per_step"] / lat.forward_ms(1, 1, ctx)
        lookup = ng["draft_ms_per_step"] + max(
            0.0, ng["overhead_ms_per_step"] - plain["overhead_ms_per_step"]
        )
        return plain["overhead_ms_per_step"], scale, lookup

    def speedups(cal_round: tuple[float, float, float], path: Path) -> dict[int, float]:
        overhead, scale, lookup = cal_round
        tput = {
            k: simulate(
                scenario(path, trace, args.batch, overhead, lookup, k),
                target_latency=Scaled(lat, scale),
            ).metrics["throughput_tok_per_s"]
            for k in [0, *ks]
        }
        return {k: tput[k] / tput[0] for k in ks}

    # Each round: calibration runs, then plain and the n-gram configs on the scored
    # prompts; the prediction of a round uses that round's calibration (the load drifts).
    rounds = []
    for _ in range(args.repeats):
        c = calibrate()
        live = {k: run(k, scored) for k in [0, *ks]}
        measured = {k: live[k].tok_per_s / live[0].tok_per_s for k in ks}
        rounds.append((c, live, measured, speedups(c, before), speedups(c, after)))

    print(
        f"n-gram window {lo}..{hi}, batch {args.batch}, {len(scored)} scored prompts x "
        f"{args.new_tokens} tokens (bf16, 1 torch thread), {args.repeats} rounds; calibration "
        f"on {len(cal_plain)}-{len(cal)} other prompts: match probability "
        f"{prof.acceptance.match_probability} over all positions"
    )
    med = statistics.median
    over, scale, lookup = (med(r[0][i] for r in rounds) for i in range(3))
    plain = med(r[1][0].tok_per_s for r in rounds)
    print(
        f"per round (medians): host overhead {over:.2f} ms/step, the profile's forwards x "
        f"{scale:.2f}, lookup {lookup:.2f} ms per sequence-step; live plain {plain:.1f} tok/s"
    )
    print(
        f"\n{'config':<10}{'miss/step':>10}{'speedup':>9}{'range':>12}"
        f"{'before':>8}{'|err|':>7}{'after':>8}{'|err|':>7}"
    )
    for k in ks:
        st = rounds[0][1][k].stats
        miss = 1.0 - st.num_drafts / max(st.num_seq_steps, 1)
        m = [r[2][k] for r in rounds]
        b = [r[3][k] for r in rounds]
        a = [r[4][k] for r in rounds]
        eb = med(abs(x / y - 1) for x, y in zip(b, m, strict=True)) * 100
        ea = med(abs(x / y - 1) for x, y in zip(a, m, strict=True)) * 100
        print(
            f"ngram k={k:<4}{miss:10.2f}{med(m):9.3f}  {min(m):.2f}-{max(m):.2f}"
            f"{med(b):8.3f}{eb:6.1f}%{med(a):8.3f}{ea:6.1f}%"
        )
    print("|err|: median over rounds of |predicted / measured speedup - 1|")
    print(f"\n{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} on 2 CPUs")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
