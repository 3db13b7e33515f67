"""``spectune roofline``: roofline latency profiles for GPUs we cannot measure.

Prints decode step latency (ms per forward at query 1 = ms per output token of each
sequence without speculation) for a device × model × tensor-parallel degree, at several
batches and contexts; ``--out`` writes the full latency profile YAML
(``provenance.kind: roofline``); ``--all --out-dir DIR`` regenerates every shipped profile
(``DIR/<device>/<model>.yaml``). The model and its efficiency factors are documented in
:mod:`spectune.simulator.roofline` and hwprofiles/README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spectune.output import print_json, table
from spectune.simulator.errors import InputError
from spectune.simulator.hardware import ARCHS, DEVICES, get_arch, get_device
from spectune.simulator.roofline import (
    SHIPPED_MODELS,
    check_fits,
    forward_breakdown,
    roofline_profile,
    shipped_profiles,
    write_profile,
)

TABLE_BATCHES = (1, 8, 32, 64, 128, 256)
TABLE_CONTEXTS = (512, 2048, 8192, 32768)

EPILOG = """\
examples:
  spectune roofline --device h100-sxm --model llama-3.1-8b
  spectune roofline --device a100-80gb --model llama-3.1-70b --tp 4 --out my.yaml
  spectune roofline --list
  spectune roofline --all --out-dir hwprofiles      # regenerate every shipped profile

model slugs may carry the TP degree as in the shipped file names (llama-3.1-70b-tp4).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "roofline",
        help="roofline latency profiles for GPUs from spec sheets",
        description="Roofline forward latency of a model on a GPU from spec-sheet bandwidth and\n"
        "FLOP/s with stated efficiency factors; writes spectune/latency/v1 profiles.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", help=f"device slug ({', '.join(DEVICES)})")
    p.add_argument("--model", help=f"model slug ({', '.join(ARCHS)})")
    p.add_argument("--tp", type=int, default=None, help="tensor-parallel degree (default 1)")
    p.add_argument("--out", metavar="FILE", help="write the latency profile YAML here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list known devices and models")
    p.add_argument(
        "--all", action="store_true", help="write every shipped profile (needs --out-dir)"
    )
    p.add_argument("--out-dir", metavar="DIR", help="folder for --all (e.g. hwprofiles)")
    p.set_defaults(func=run)


def _split_tp(model: str, tp: int | None) -> tuple[str, int]:
    """``llama-3.1-70b-tp4`` -> (``llama-3.1-70b``, 4); an explicit --tp must agree."""
    base, sep, tail = model.lower().rpartition("-tp")
    if sep and tail.isdigit() and base in ARCHS:
        if tp is not None and tp != int(tail):
            raise InputError(f"model {model!r} says tp {tail} but --tp is {tp}", field="--tp")
        return base, int(tail)
    return model, 1 if tp is None else tp


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if args.all:
        return _write_all(args)
    if not args.device or not args.model:
        raise InputError(
            "need --device and --model (or --list, or --all --out-dir DIR)", field="--device"
        )
    device = get_device(args.device)
    model_slug, tp = _split_tp(args.model, args.tp)
    arch = get_arch(model_slug)
    if tp < 1:
        raise InputError(f"must be >= 1, got {tp}", field="--tp")
    check_fits(device, arch, tp)
    rows = []
    for b in TABLE_BATCHES:
        row: list[Any] = [b]
        for c in TABLE_CONTEXTS:
            row.append(forward_breakdown(device, arch, tp, b, 1, c).total_ms)
        rows.append(row)
    bd1 = forward_breakdown(device, arch, tp, 1, 1, 2048)
    written = None
    if args.out:
        profile = roofline_profile(device.slug, arch.slug, tp)
        write_profile(profile, args.out)
        written = {"path": args.out, "points": len(profile.points), "fit": profile.fit}
    if args.json:
        print_json(
            {
                "device": device.slug,
                "model": arch.slug,
                "tp": tp,
                "decode_step_ms": {
                    str(b): {str(c): r[i + 1] for i, c in enumerate(TABLE_CONTEXTS)}
                    for b, r in zip(TABLE_BATCHES, rows, strict=True)
                },
                "batch1_context2048": vars(bd1),
                "written": None
                if written is None
                else {
                    "path": written["path"],
                    "points": written["points"],
                    "cv_error_pct": written["fit"].cv_error_pct,
                },
            }
        )
        return 0
    print(f"{arch.name} on {device.name} x{tp} (bf16, roofline)")
    print("decode step, ms per forward (= ms per output token per sequence), by context:")
    print(table(rows, ["batch", *(f"ctx {c}" for c in TABLE_CONTEXTS)]))
    print(
        f"batch 1, context 2048: {bd1.total_ms:.3f} ms ({1000 / bd1.total_ms:.0f} tok/s): "
        f"GEMMs {bd1.gemm_ms:.3f} ({bd1.gemm_bound}-bound), attention {bd1.attention_ms:.3f}, "
        f"kernel overhead {bd1.overhead_ms:.3f}, all-reduce {bd1.allreduce_ms:.3f}"
    )
    if written:
        print(
            f"wrote {written['path']} ({written['points']} points, "
            f"interpolation cv error {written['fit'].cv_error_pct:.2f}%)"
        )
    return 0


def _list(as_json: bool) -> int:
    devices = [
        [d.slug, d.name, d.memory_bw_gb_s, d.bf16_tflops, d.memory_gib, d.link]
        for d in DEVICES.values()
    ]
    models = [[a.slug, a.name, a.params() / 1e9, a.layers, a.hidden] for a in ARCHS.values()]
    shipped = [f"{m} (tp {tp})" for m, _, tp in SHIPPED_MODELS]
    if as_json:
        print_json(
            {
                "devices": [
                    dict(
                        zip(
                            ("slug", "name", "memory_bw_gb_s", "bf16_tflops", "memory_gib", "link"),
                            d,
                            strict=True,
                        )
                    )
                    for d in devices
                ],
                "models": [
                    dict(zip(("slug", "name", "params_b", "layers", "hidden"), m, strict=True))
                    for m in models
                ],
                "shipped_models": shipped,
            }
        )
        return 0
    print(table(devices, ["device", "name", "GB/s", "bf16 TFLOP/s", "GiB", "link"], digits=2))
    print()
    print(table(models, ["model", "name", "params (B)", "layers", "hidden"], digits=2))
    print()
    print("shipped profiles per device: " + ", ".join(shipped))
    return 0


def _write_all(args: argparse.Namespace) -> int:
    if not args.out_dir:
        raise InputError("--all needs --out-dir DIR", field="--out-dir")
    out_dir = Path(args.out_dir)
    rows = []
    for dev, file_slug, arch_slug, tp in shipped_profiles():
        profile = roofline_profile(dev, arch_slug, tp)
        path = out_dir / dev / f"{file_slug}.yaml"
        write_profile(profile, path)
        fit = profile.fit
        rows.append([str(path), len(profile.points), fit.cv_error_pct if fit else None])
    if args.json:
        print_json([dict(zip(("path", "points", "cv_error_pct"), r, strict=True)) for r in rows])
    else:
        print(table(rows, ["profile", "points", "cv error %"]))
    return 0
