"""How noisy live runs are on this machine, and what that means for validation targets.

Two measurements:

- ``--live N``: one process runs the same plain-decoding batch (the trained byte target,
  16 held-out prompts x 128 tokens, 1 torch thread) N times back to back and prints each
  run's throughput, wall vs thread CPU time, and the VM's steal time. A spread here is the
  machine's, not the engine's: the work is identical every time.
- ``REPORT_DIR ...``: from validation reports' raw live runs (``runs.jsonl``), the
  per-run noise of the offline configs (log standard deviation of a run around its
  config's mean, pooled), and by Monte Carlo the largest |error| of the medians of the
  offline configs one should expect *with perfect predictions* at 3, 5, 7 and 9 repeats.

    .venv/bin/python benchmarks/noise_floor.py --live 60
    .venv/bin/python benchmarks/noise_floor.py docs/validation /tmp/other-run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _steal() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in fields]
    return (vals[7] if len(vals) > 7 else 0), sum(vals)


def live(n: int) -> None:
    import torch

    from spectune.profiler.native.engine import SpecEngine
    from spectune.profiler.native.generate import generate
    from spectune.profiler.runtime.prompts import read_prompts, tokenize_prompts
    from spectune.profiler.runtime.specs import load_model

    torch.set_num_threads(1)
    target = load_model(str(REPO / "models" / "stdlib-byte-target"))
    path = REPO / "examples" / "prompts" / "stdlib.txt"
    prompts = tokenize_prompts(read_prompts(path), target.tokenizer, 256, str(path))[:16]
    engine = SpecEngine(target.model, None, max_batch=16, max_len=512)
    tps = []
    t_start = time.perf_counter()
    with torch.inference_mode():
        generate(engine, prompts[:2], 4)
        for i in range(n):
            s0, a0 = _steal()
            c0 = time.thread_time()
            res = generate(engine, prompts, 128)
            cpu = time.thread_time() - c0
            s1, a1 = _steal()
            steal = 100.0 * (s1 - s0) / max(1, a1 - a0)
            tps.append(res.tok_per_s)
            print(
                f"{time.perf_counter() - t_start:6.1f} s  run {i:3d}  {res.tok_per_s:7.0f} tok/s"
                f"  wall {res.wall_s:.3f} s  cpu {cpu:.3f} s  steal {steal:.1f}%"
            )
    a = np.array(tps)
    print(
        f"\n{n} identical runs: median {np.median(a):.0f} tok/s, min {a.min():.0f}, "
        f"max {a.max():.0f} (max/min {a.max() / a.min():.3f}), "
        f"log sd {np.std(np.log(a), ddof=1):.3f}"
    )


def from_reports(dirs: list[str]) -> None:
    from spectune.validation.interference import noise_floor, throughputs_by_config

    runs: dict[str, list[float]] = {}
    configs = 0
    for d in dirs:
        rows = [json.loads(x) for x in (Path(d) / "runs.jsonl").read_text().splitlines()]
        found = throughputs_by_config(rows, prefix="offline/")
        runs.update({f"{d}:{k}": v for k, v in found.items()})
        configs = max(configs, len(found))
    print(f"offline configs per report: {configs}; runs pooled: {sum(map(len, runs.values()))}")
    for reps in (3, 5, 7, 9):
        nf = noise_floor(runs, configs=configs, repeats=reps)
        if reps == 3:
            print(f"per-run noise (log sd around the config's mean): {nf['log_sd']:.3f}")
        print(
            f"perfect predictions, median of {reps} repeats: largest |error| over {configs} "
            f"configs {nf['max_err_median_pct']:.1f}% (median), {nf['max_err_p90_pct']:.1f}% (p90)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="*", help="validation report folders (runs.jsonl)")
    ap.add_argument("--live", type=int, default=0, help="identical live runs to time")
    args = ap.parse_args()
    if args.live:
        live(args.live)
    if args.reports:
        from_reports(args.reports)
    if not args.live and not args.reports:
        ap.error("give --live N and/or report folders")


if __name__ == "__main__":
    main()
