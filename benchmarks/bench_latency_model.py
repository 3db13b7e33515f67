"""Median µs per ``LatencyModel.forward_ms`` call, the simulator's hottest cost query.

Queries mimic a simulation: decode/verify at batches 1..256 with query 1..9 and a mean
context that drifts every call (a float), plus batch-1 prefill chunks. Three variants are
interleaved in each repeat so machine noise hits them alike:

- ``warm``: the (batch, query) curves are cached (the steady state of a simulation);
- ``cold``: a fresh model per repeat, so every new (batch, query) builds its curve;
- ``constant``: ``ConstantLatency``, the floor for a Python call doing arithmetic.

Also prints the one-off cost of loading a shipped profile and of the cross-validation.

Run: ``.venv/bin/python benchmarks/bench_latency_model.py [--repeats 7] [--calls 100000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from spectune.simulator.latency import ConstantLatency, LatencyModel
from spectune.simulator.schema import load_latency_profile

PROFILE = Path(__file__).resolve().parents[1] / "hwprofiles" / "h100-sxm" / "llama-3.1-8b.yaml"


def make_queries(n: int, seed: int = 0) -> list[tuple[int, int, float]]:
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    batches = rng.integers(1, 257, n)
    queries = rng.integers(1, 10, n)
    contexts = np.abs(np.cumsum(rng.normal(0, 50, n))) % 30000
    out = [(int(b), int(q), float(c)) for b, q, c in zip(batches, queries, contexts, strict=True)]
    for i in range(0, n, 50):  # a prefill chunk now and then
        out[i] = (1, int(rng.integers(16, 8193)), float(rng.integers(0, 30000)))
    return out


def time_calls(fn, queries) -> float:
    t0 = time.perf_counter()
    for b, q, c in queries:
        fn(b, q, c)
    return (time.perf_counter() - t0) / len(queries) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    profile = load_latency_profile(PROFILE)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = LatencyModel.from_profile(profile)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cv = warm.cv_error_pct
    cv_s = time.perf_counter() - t0

    queries = make_queries(args.calls)
    const = ConstantLatency(6.0, 0.01)
    time_calls(warm.forward_ms, queries)  # fill the cache
    results: dict[str, list[float]] = {"warm": [], "cold": [], "constant": []}
    for _ in range(args.repeats):
        results["warm"].append(time_calls(warm.forward_ms, queries))
        cold = LatencyModel.from_profile(profile)
        results["cold"].append(time_calls(cold.forward_ms, queries))
        results["constant"].append(time_calls(const.forward_ms, queries))

    print(
        f"profile {PROFILE.name} ({len(profile.points)} points): load {load_s * 1e3:.1f} ms, "
        f"build {build_s * 1e3:.1f} ms, cross-validation {cv_s * 1e3:.1f} ms "
        f"(cv error {cv:.2f}%)"
    )
    print(
        f"{args.calls} calls x {args.repeats} interleaved repeats; "
        f"distinct (batch, query) curves: {len(warm._cache)}"
    )
    for name, vals in results.items():
        print(
            f"  {name:9s} median {statistics.median(vals):6.3f} us/call   "
            f"(min {min(vals):.3f}, max {max(vals):.3f})"
        )
    ratio = statistics.median(
        w / c for w, c in zip(results["warm"], results["constant"], strict=True)
    )
    print(f"  warm / constant (median of per-repeat ratios): {ratio:.2f}")
    print(f"  off-grid calls in the warm run: {warm.extrapolated}")


if __name__ == "__main__":
    main()
