"""bf16 vs fp32 forward latency of the demo models on this CPU (which dtype to profile in).

For the byte demo target and drafter shapes (profiler/demo/train.py recipes), times one forward
at a few (batch, query_tokens, context_tokens) points in both dtypes, interleaved
(bf16, fp32, bf16, fp32, ...) so machine noise hits both alike, the KV cache pre-filled to
the context as the latency profiler does. Prints the median ms of each and the ratio
fp32 / bf16 (> 1: bf16 is faster).

    .venv/bin/python benchmarks/bench_profile_dtype.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from spectune.profiler.demo.recipes import DRAFTER_RECIPE, TARGET_RECIPE
from spectune.profiler.measure.latency import _Bench
from spectune.profiler.runtime.config import ModelConfig
from spectune.profiler.runtime.model import random_model
from spectune.profiler.runtime.timing import Timer

POINTS = [(1, 1, 256), (1, 8, 256), (1, 64, 256), (8, 1, 256), (8, 8, 256), (16, 16, 512)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = Timer("cpu")
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<22}{'B':>4}{'q':>5}{'ctx':>6}{'bf16 ms':>10}{'fp32 ms':>10}{'fp32/bf16':>11}")
    for recipe in (TARGET_RECIPE, DRAFTER_RECIPE):
        cfg = ModelConfig.from_hf_dict(recipe.model)
        benches = {
            dt: _Bench(random_model(cfg, seed=0, dtype=dt), 16, 600, seed=0)
            for dt in (torch.bfloat16, torch.float32)
        }
        for point in POINTS:
            times: dict[torch.dtype, list[float]] = {dt: [] for dt in benches}
            with torch.inference_mode():
                for _ in range(args.repeats):
                    for dt, bench in benches.items():
                        bench.run(point)  # warm-up
                        runs = []
                        for _ in range(3):
                            with timer.measure() as t:
                                bench.run(point)
                            runs.append(t.ms)
                        times[dt].append(min(runs))
            bf, fp = (statistics.median(times[dt]) for dt in (torch.bfloat16, torch.float32))
            b, q, c = point
            print(f"{recipe.name:<22}{b:>4}{q:>5}{c:>6}{bf:>10.3f}{fp:>10.3f}{fp / bf:>11.2f}")


if __name__ == "__main__":
    main()
