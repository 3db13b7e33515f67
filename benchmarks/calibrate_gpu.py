"""Calibrate the GPU cost model on public measurements and print its errors.

Reads hwprofiles/calibration/forward_points.yaml (every point with its source, setup and
engine version), interprets each point (spectune.simulator.costmodel.observations: what
batch and context it ran at, or why it is left out), fits the calibrated model on all
decode-ITL and prefill points, then refits once per independence group of sources with
that group held out and predicts the group's points (leave-one-source-out). Prints:

- the data used and left out (counts per reason), coverage per GPU x model;
- the fitted parameters per GPU generation;
- held-out and in-sample error per category (decode ITL, prefill, and the checks that are
  never fitted: static-batch throughput, weight-only dtypes, eager engines, a hand-written
  kernel loop), per source group and per GPU; the pure roofline's error beside them;
- the batch-1 decode table (hwprofiles/README.md);
- every decode point with its held-out prediction (``--points``).

``--write`` rewrites hwprofiles/calibration/fitted.yaml (parameters + held-out errors),
which the calibrated profiles and ``spectune roofline`` read, and
hwprofiles/calibration/predictions.csv (every observation with its held-out, in-sample and
roofline predictions; benchmarks/plot_gpu_costmodel.py draws from it); ``--csv FILE``
writes that table elsewhere.

Run: ``.venv/bin/python benchmarks/calibrate_gpu.py [--write] [--points] [--csv FILE]``
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter, defaultdict

import numpy as np

from spectune.simulator.costmodel import calibration as C
from spectune.simulator.costmodel import fit as F
from spectune.simulator.costmodel.observations import (
    CATEGORIES,
    FITTED,
    Observation,
    observations,
)

LONG_PROMPT = 1024  # prefill points at or above this prompt length are forward-dominated


def stats(err: np.ndarray) -> dict[str, float]:
    a = np.abs(err[np.isfinite(err)]) * 100
    if not len(a):
        return {"points": 0}
    return {
        "median_pct": float(np.median(a)),
        "max_pct": float(a.max()),
        "points": len(a),
        "p90_pct": float(np.percentile(a, 90)),
    }


def fmt(s: dict[str, float]) -> str:
    if not s.get("points"):
        return "-"
    return (
        f"{s['median_pct']:5.1f}% / {s['p90_pct']:5.1f}% / {s['max_pct']:5.1f}% (n={s['points']})"
    )


def table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in rows
    ]
    return "\n".join(lines)


def category_errors(obs: list[Observation], err: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for cat in CATEGORIES:
        idx = [i for i, o in enumerate(obs) if o.category == cat]
        out[cat] = stats(err[idx])
    idx = [i for i, o in enumerate(obs) if o.category == "decode" and o.batch == 1]
    out["decode_batch1"] = stats(err[idx])
    idx = [i for i, o in enumerate(obs) if o.category == "prefill" and o.input_len >= LONG_PROMPT]
    out["prefill_long"] = stats(err[idx])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--write", action="store_true", help="rewrite hwprofiles/calibration/fitted.yaml"
    )
    ap.add_argument("--points", action="store_true", help="print every decode point")
    ap.add_argument("--csv", metavar="FILE", help="write observations with predictions")
    args = ap.parse_args()

    obs, excluded = observations()
    print(
        f"public points: {len(obs) + len(excluded)}; interpreted {len(obs)}, "
        f"left out {len(excluded)}"
    )
    print(
        table(
            [[n, r] for r, n in Counter(e.reason for e in excluded).most_common()],
            ["left out", "reason"],
        )
    )
    print()
    cover: dict[tuple[str, str], set[str]] = defaultdict(set)
    counts: Counter = Counter()
    for o in obs:
        if o.category in FITTED:
            cover[(o.device, o.model)].add(o.group)
            counts[(o.device, o.model)] += 1
    print("fitted points (decode ITL, prefill, single-GPU static batches) per GPU x model:")
    print(
        table(
            [[d, m, counts[(d, m)], ", ".join(sorted(g))] for (d, m), g in sorted(cover.items())],
            ["GPU", "model", "points", "groups"],
        )
    )
    groups = sorted({o.group for o in obs if o.category in FITTED})
    print(f"independent source groups fitted: {len(groups)} ({', '.join(groups)})\n")

    t0 = time.perf_counter()
    prior_sd = F.select_prior_sd(obs)
    cal = F.fit(obs, prior_sd)
    t_fit = time.perf_counter() - t0
    pred_in = F.predict_with(cal, obs)
    t0 = time.perf_counter()
    pred_lo, fits = F.leave_one_group_out(obs)
    t_loso = time.perf_counter() - t0
    roof = F.roofline_predictions(obs)
    meas = np.array([o.measured for o in obs])
    e_in, e_lo, e_roof = pred_in / meas - 1, pred_lo / meas - 1, roof / meas - 1
    print(
        f"fit {t_fit:.2f} s; leave-one-source-out "
        f"({len({o.group for o in obs})} groups) {t_loso:.2f} s"
    )
    print(
        f"prior width selected by leave-one-source-out: {prior_sd} (of {F.PRIOR_SD_CANDIDATES});"
        f" per held-out group: { {g: c.prior_sd for g, c in fits.items()} }"
    )
    print(f"TTFT engine/client overhead (not in forwards): {cal.ttft_overhead_ms:.2f} ms")
    keys = list(cal.params["hopper"].as_dict())
    print(
        table(
            [[k, *(f"{getattr(cal.params[g], k)}"[:7] for g in F.GENERATIONS)] for k in keys],
            ["parameter", *F.GENERATIONS],
        )
    )
    print()

    lo, ins, rf = (category_errors(obs, e) for e in (e_lo, e_in, e_roof))
    print(
        "absolute error, median / p90 / max (n): held out (leave-one-source-out), "
        "in sample, pure roofline"
    )
    print(
        table(
            [[c, fmt(lo[c]), fmt(ins[c]), fmt(rf[c])] for c in lo],
            ["category", "held out", "in sample", "roofline"],
        )
    )
    print(
        "(fitted: decode, prefill, static; checks, never fitted: static_tp, weight_only, "
        "eager, kernel_loop)\n"
    )
    rows = []
    for g in sorted({o.group for o in obs}):
        for cat in CATEGORIES:
            idx = [i for i, o in enumerate(obs) if o.group == g and o.category == cat]
            if idx:
                rows.append([g, cat, fmt(stats(e_lo[idx])), fmt(stats(e_roof[idx]))])
    print(table(rows, ["held-out group", "category", "held out", "roofline"]))
    print()
    rows = []
    for dev in sorted({o.device for o in obs}):
        idx = [i for i, o in enumerate(obs) if o.device == dev and o.category == "decode"]
        if idx:
            rows.append([dev, fmt(stats(e_lo[idx])), fmt(stats(e_roof[idx]))])
    print(table(rows, ["GPU (decode ITL)", "held out", "roofline"]))
    print()

    print("batch-1 decode (ms per token): public figure, held out, in sample, pure roofline")
    rows = []
    for i, o in enumerate(obs):
        if o.category == "decode" and o.batch == 1:
            rows.append(
                [
                    o.model,
                    o.device,
                    o.tp,
                    o.dtype,
                    o.source_id,
                    f"{o.measured:.2f}",
                    f"{pred_lo[i]:.2f} ({100 * e_lo[i]:+.0f}%)",
                    f"{pred_in[i]:.2f} ({100 * e_in[i]:+.0f}%)",
                    f"{roof[i]:.2f} ({100 * e_roof[i]:+.0f}%)",
                ]
            )
    print(
        table(
            rows,
            [
                "model",
                "GPU",
                "TP",
                "dtype",
                "source",
                "public",
                "held out",
                "in sample",
                "roofline",
            ],
        )
    )
    print()
    if args.points:
        rows = [
            [
                o.point_id,
                o.group,
                o.device,
                o.model,
                o.tp,
                o.dtype,
                o.batch,
                f"{o.context:g}",
                f"{o.measured:.2f}",
                f"{pred_lo[i]:.2f}",
                f"{100 * e_lo[i]:+.1f}%",
                f"{100 * e_roof[i]:+.1f}%",
            ]
            for i, o in enumerate(obs)
            if o.category == "decode"
        ]
        print(
            table(
                rows,
                [
                    "point",
                    "group",
                    "GPU",
                    "model",
                    "TP",
                    "dtype",
                    "B",
                    "ctx",
                    "ms",
                    "held out",
                    "err",
                    "roofline err",
                ],
            )
        )
        print()
    csv_path = args.csv or (str(C.DATA_DIR / "predictions.csv") if args.write else None)
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "point_id",
                    "source_id",
                    "group",
                    "category",
                    "device",
                    "model",
                    "tp",
                    "dtype",
                    "batch",
                    "input_len",
                    "output_len",
                    "context",
                    "measured",
                    "held_out",
                    "in_sample",
                    "roofline",
                ]
            )
            for i, o in enumerate(obs):
                w.writerow(
                    [
                        o.point_id,
                        o.source_id,
                        o.group,
                        o.category,
                        o.device,
                        o.model,
                        o.tp,
                        o.dtype,
                        o.batch,
                        o.input_len,
                        o.output_len,
                        o.context,
                        o.measured,
                        f"{pred_lo[i]:.5g}",
                        f"{pred_in[i]:.5g}",
                        f"{roof[i]:.5g}",
                    ]
                )
        print(f"wrote {csv_path}")
    if args.write:
        sources = sorted({o.source_id for o in obs if o.category in FITTED})
        keep = ("decode", "decode_batch1", "prefill", "prefill_long", "static", "static_tp")
        errors = {("decode_itl" if k == "decode" else k): v for k, v in lo.items() if k in keep}
        C.DEFAULT_PATH.write_text(C.dump(cal, errors, sources))
        print(f"wrote {C.DEFAULT_PATH}")


if __name__ == "__main__":
    main()
