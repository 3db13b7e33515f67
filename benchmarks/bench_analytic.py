"""Speed of the closed-form layer: optimal_tree's DP and best_k, medians of repeats.

Run: .venv/bin/python benchmarks/bench_analytic.py [--repeats 21]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from spectune.simulator import analytic as an


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    ranked8 = np.linspace(0.8, 0.1, 8)
    cases = {
        "optimal_tree budget 64 depth 8 width 8": lambda: an.optimal_tree(ranked8, 64, 8),
        "optimal_tree budget 128 depth 12 width 8": lambda: an.optimal_tree(ranked8, 128, 12),
        "optimal_expected_tokens budget 64 depth 8 width 8 (all budgets)": (
            lambda: an.optimal_expected_tokens(ranked8, 64, 8)
        ),
        "best_k k_max 16": lambda: an.best_k([0.8, 0.74, 0.7, 0.67], 0.05, 16),
        "best_k batch of 1000 vectors, k_max 16": (
            lambda: an.best_k(np.full((1000, 6), 0.7), 0.05, 16)
        ),
    }
    for name, fn in cases.items():
        print(f"{median_ms(fn, args.repeats):8.3f} ms  {name}")


if __name__ == "__main__":
    main()
