"""``spectune roofline``: GPU latency profiles for hardware you cannot measure.

Prices a model — a catalogue name or any Hugging Face ``config.json`` (dense or MoE) —
and optionally its drafter (a separate draft model, an EAGLE-1 / EAGLE-3 head, the
target's MTP module, or a parallel drafter that proposes k tokens in one pass) on a GPU
with the calibrated cost model (default; efficiencies fitted on public measurements,
hwprofiles/README.md) or the pure roofline (``--model-kind roofline``). Prints decode step
latency by batch and context, the batch-1 breakdown, the verify-to-decode cost ratio
(B × (k+1) tokens over B × 1, the curve that decides k) and the drafter's cost; ``--out``
/ ``--drafter-out`` write ``spectune/latency/v1`` profiles; ``--all --out-dir DIR``
regenerates every shipped profile.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spectune.output import print_json, table
from spectune.simulator.costmodel.catalog import CATALOG, get_model
from spectune.simulator.costmodel.dtypes import KV_DTYPE_BYTES, WEIGHT_DTYPES
from spectune.simulator.costmodel.hfconfig import load_config, mtp_from_config, shape_from_config
from spectune.simulator.costmodel.model import GpuCostModel, calibrated_model, roofline_model
from spectune.simulator.costmodel.profiles import cost_profile, shipped_profiles, write_profile
from spectune.simulator.costmodel.shape import ModelShape
from spectune.simulator.errors import InputError
from spectune.simulator.hardware import DEVICES, get_device

TABLE_BATCHES = (1, 8, 32, 64, 128, 256)
TABLE_CONTEXTS = (512, 2048, 8192, 32768)
RATIO_BATCHES = (1, 8, 32, 64, 128)
RATIO_KS = (1, 2, 3, 4, 5, 7)
RATIO_CONTEXT = 2048
DRAFTER_KINDS = ("auto", "model", "eagle", "eagle3", "mtp", "parallel")

EPILOG = """\
examples:
  spectune roofline --device h100-sxm --model llama-3.1-8b
  spectune roofline --device h100-sxm --config Qwen2.5-7B/config.json --dtype fp8
  spectune roofline --device h200 --model qwen3-30b-a3b --drafter-config eagle3/config.json
  spectune roofline --device h100-sxm --config GLM-4.5-Air/config.json --tp 4 --drafter mtp
  spectune roofline --device a100-80gb --model llama-3.1-70b --tp 4 --out my.yaml
  spectune roofline --device l40s --model llama-3.1-8b --model-kind roofline
  spectune roofline --list
  spectune roofline --all --out-dir hwprofiles      # regenerate every shipped profile

drafter kinds: model (separate draft model: k passes), eagle / eagle3 (heads on the
target's features: k passes), mtp (the target's next-token module(s): k passes), parallel
(one pass proposing k tokens at once, e.g. PARD-style mask-token drafters: cost nearly
flat in k while the pass is memory-bound).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "roofline",
        help="GPU latency profiles (calibrated cost model or pure roofline)",
        description="Forward latency of any model (catalogue name or config.json) and its\n"
        "drafter on a GPU; writes spectune/latency/v1 profiles.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", help=f"device slug ({', '.join(DEVICES)})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="catalogue model (see --list); may end in -tpN")
    src.add_argument("--config", metavar="FILE", help="Hugging Face config.json of the target")
    p.add_argument(
        "--drafter", metavar="SLUG|mtp", help="catalogue drafter, or 'mtp' (target's module)"
    )
    p.add_argument("--drafter-config", metavar="FILE", help="config.json of the drafter")
    p.add_argument("--drafter-kind", choices=DRAFTER_KINDS, default="auto")
    p.add_argument("--dtype", default=None, help=f"weights ({', '.join(WEIGHT_DTYPES)})")
    p.add_argument("--kv-dtype", default="bf16", help=f"KV cache ({', '.join(KV_DTYPE_BYTES)})")
    p.add_argument("--tp", type=int, default=None, help="tensor-parallel degree (default 1)")
    p.add_argument("--model-kind", choices=("calibrated", "roofline"), default="calibrated")
    p.add_argument("--eager", action="store_true", help="engine without CUDA graphs")
    p.add_argument("--out", metavar="FILE", help="write the target's latency profile here")
    p.add_argument("--drafter-out", metavar="FILE", help="write the drafter's profile here")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--list", action="store_true", help="list known devices and models")
    p.add_argument("--all", action="store_true", help="write every shipped profile")
    p.add_argument("--out-dir", metavar="DIR", help="folder for --all (e.g. hwprofiles)")
    p.set_defaults(func=run)


def _split_tp(model: str, tp: int | None) -> tuple[str, int]:
    """``llama-3.1-70b-tp4`` -> (``llama-3.1-70b``, 4); an explicit --tp must agree."""
    base, sep, tail = model.lower().rpartition("-tp")
    if sep and tail.isdigit() and base in CATALOG:
        if tp is not None and tp != int(tail):
            raise InputError(f"model {model!r} says tp {tail} but --tp is {tp}", field="--tp")
        return base, int(tail)
    return model, 1 if tp is None else tp


def _default_dtype(cfg: dict[str, Any] | None) -> str:
    """bf16 unless the config's ``quantization_config`` says fp8 or 4-bit weights."""
    q = (cfg or {}).get("quantization_config") or {}
    method = str(q.get("quant_method", "")).lower()
    if "fp8" in method or q.get("fmt") in ("e4m3", "float8"):
        return "fp8"
    if q.get("bits") == 4 or method in ("awq", "gptq"):
        return "int4-weight"
    return "bf16"


def _target(args: argparse.Namespace) -> tuple[ModelShape, dict[str, Any] | None, int]:
    if args.config:
        cfg = load_config(args.config)
        slug = Path(args.config).resolve().parent.name.lower() or "model"
        return shape_from_config(cfg, slug=slug, source=args.config), cfg, args.tp or 1
    slug, tp = _split_tp(args.model, args.tp)
    shape = get_model(slug)
    return shape, CATALOG[shape.slug].config, tp


def _drafter(args: argparse.Namespace, target: ModelShape, cfg: dict[str, Any] | None):
    """(shape, kind) of the requested drafter, or None."""
    kind = args.drafter_kind
    if args.drafter_config:
        dcfg = load_config(args.drafter_config)
        if kind == "mtp":
            return mtp_from_config(dcfg, target, slug="mtp", source=args.drafter_config), "mtp"
        sk = "auto" if kind in ("auto", "parallel") else kind
        shape = shape_from_config(
            dcfg,
            slug=Path(args.drafter_config).resolve().parent.name.lower() or "drafter",
            kind=sk,
            source=args.drafter_config,
            target=target,
        )
        return shape, "parallel" if kind == "parallel" else shape.head_kind
    if args.drafter is None:
        return None
    if args.drafter.lower() == "mtp":
        source = args.config or f"catalog:{target.slug}"
        return mtp_from_config(cfg or {}, target, slug=f"mtp-{target.slug}", source=source), "mtp"
    shape = get_model(args.drafter)
    return shape, ("parallel" if kind == "parallel" else shape.head_kind)


def _build(args: argparse.Namespace, device, shape: ModelShape, tp: int, dtype: str):
    if args.model_kind == "roofline":
        return roofline_model(device, shape, tp, dtype, args.kv_dtype)
    return calibrated_model(device, shape, tp, dtype, args.kv_dtype, eager=args.eager)


def _draft_pass_ms(model: GpuCostModel, kind: str, batch: int, k: int, ctx: float) -> float:
    """Draft cost of one speculation step of k tokens (a parallel drafter: one pass of k
    tokens per sequence; the others: k passes of one token)."""
    if kind == "parallel":
        return model.forward_ms(batch, k, ctx)
    return sum(model.forward_ms(batch, 1, ctx + i) for i in range(k))


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if args.all:
        return _write_all(args)
    if not args.device or not (args.model or args.config):
        raise InputError(
            "need --device and --model or --config (or --list, or --all --out-dir DIR)",
            field="--device",
        )
    device = get_device(args.device)
    shape, cfg, tp = _target(args)
    dtype = args.dtype or _default_dtype(cfg)
    target = _build(args, device, shape, tp, dtype)
    target.check_fits()
    dr = _drafter(args, shape, cfg)
    draft = _build(args, device, dr[0], tp, dtype) if dr else None
    decode = {b: {c: target.forward_ms(b, 1, c) for c in TABLE_CONTEXTS} for b in TABLE_BATCHES}
    ratio = {
        b: {k: target.forward_ms(b, k + 1, RATIO_CONTEXT) / decode_at(target, b) for k in RATIO_KS}
        for b in RATIO_BATCHES
    }
    bd1 = target.breakdown(1, 1, 2048)
    drafter_cost = None
    if draft is not None:
        drafter_cost = {
            b: {
                k: _draft_pass_ms(draft, dr[1], b, k, RATIO_CONTEXT) / decode_at(target, b)
                for k in RATIO_KS
            }
            for b in RATIO_BATCHES
        }
    written = []
    for model, path in ((target, args.out), (draft, args.drafter_out)):
        if path and model is not None:
            profile = cost_profile(model)
            write_profile(profile, path)
            written.append(
                {
                    "path": path,
                    "points": len(profile.points),
                    "cv_error_pct": profile.fit.cv_error_pct if profile.fit else None,
                }
            )
    if args.drafter_out and draft is None:
        raise InputError("--drafter-out needs --drafter or --drafter-config", field="--drafter-out")
    if args.json:
        print_json(
            {
                "device": device.slug,
                "model": shape.slug,
                "model_kind": target.kind,
                "tp": tp,
                "dtype": dtype,
                "kv_dtype": args.kv_dtype,
                "decode_step_ms": {
                    str(b): {str(c): v for c, v in r.items()} for b, r in decode.items()
                },
                "verify_ratio": {
                    str(b): {str(k): v for k, v in r.items()} for b, r in ratio.items()
                },
                "batch1_context2048": vars(bd1),
                "drafter": None
                if dr is None
                else {
                    "model": dr[0].slug,
                    "kind": dr[1],
                    "step_cost_ratio": {
                        str(b): {str(k): v for k, v in r.items()}
                        for b, r in (drafter_cost or {}).items()
                    },
                },
                "written": written,
            }
        )
        return 0
    _print_tables(target, shape, tp, dtype, args.kv_dtype, decode, ratio, bd1)
    if dr is not None and drafter_cost is not None:
        print(
            f"\ndrafter {dr[0].name} ({dr[1]}; {dr[0].params() / 1e9:.2f} B own parameters): "
            f"draft cost of one step of k tokens / target decode step, context {RATIO_CONTEXT}"
        )
        rows = [[b, *(f"{v:.3f}" for v in r.values())] for b, r in drafter_cost.items()]
        print(table(rows, ["batch", *(f"k={k}" for k in RATIO_KS)]))
    for w in written:
        print(
            f"wrote {w['path']} ({w['points']} points, interpolation cv error "
            f"{w['cv_error_pct']:.2f}%)"
        )
    return 0


def decode_at(model: GpuCostModel, batch: int) -> float:
    return model.forward_ms(batch, 1, RATIO_CONTEXT)


def _print_tables(target, shape, tp, dtype, kv_dtype, decode, ratio, bd1) -> None:
    moe = ""
    if shape.moe is not None:
        moe = f", MoE {shape.moe.experts} experts / {shape.moe.experts_per_token} per token"
    print(
        f"{shape.name} on {target.device.name} x{tp} ({dtype} weights, {kv_dtype} KV, "
        f"{target.kind}{moe})"
    )
    print("decode step, ms per forward (= ms per output token per sequence), by context:")
    rows = [[b, *r.values()] for b, r in decode.items()]
    print(table(rows, ["batch", *(f"ctx {c}" for c in TABLE_CONTEXTS)]))
    print(
        f"batch 1, context 2048: {bd1.total_ms:.3f} ms ({1000 / bd1.total_ms:.0f} tok/s): "
        f"GEMMs {bd1.gemm_ms:.3f} ({bd1.gemm_bound}-bound), attention {bd1.attention_ms:.3f}, "
        f"fixed costs {bd1.overhead_ms:.3f}, all-reduce {bd1.allreduce_ms:.3f}"
    )
    print(f"\nverify-to-decode cost ratio: B x (k+1) tokens over B x 1, context {RATIO_CONTEXT}")
    rows = [[b, *(f"{v:.3f}" for v in r.values())] for b, r in ratio.items()]
    print(table(rows, ["batch", *(f"k={k}" for k in RATIO_KS)]))


def _list(as_json: bool) -> int:
    devices = [
        [
            d.slug,
            d.name,
            d.generation,
            d.memory_bw_gb_s,
            d.bf16_tflops,
            d.memory_gib,
            ",".join(d.compute_types()),
        ]
        for d in DEVICES.values()
    ]
    models = []
    for slug in CATALOG:
        m = get_model(slug)
        models.append([slug, m.name, m.head_kind, m.params() / 1e9, m.layers, m.hidden])
    shipped = sorted({f"{f}" for _, f, _, _ in shipped_profiles()})
    if as_json:
        dk = ("slug", "name", "generation", "memory_bw_gb_s", "bf16_tflops", "memory_gib", "dtypes")
        mk = ("slug", "name", "kind", "params_b", "layers", "hidden")
        print_json(
            {
                "devices": [dict(zip(dk, d, strict=True)) for d in devices],
                "models": [dict(zip(mk, m, strict=True)) for m in models],
                "dtypes": list(WEIGHT_DTYPES),
                "kv_dtypes": list(KV_DTYPE_BYTES),
                "shipped_profiles": shipped,
            }
        )
        return 0
    print(
        table(
            devices,
            ["device", "name", "generation", "GB/s", "bf16 TFLOP/s", "GiB", "tensor cores"],
            digits=2,
        )
    )
    print()
    print(table(models, ["model", "name", "kind", "params (B)", "layers", "hidden"], digits=2))
    print(
        f"\ndtypes: {', '.join(WEIGHT_DTYPES)}; KV: {', '.join(KV_DTYPE_BYTES)}; any other "
        "model: --config path/to/config.json"
    )
    print("shipped profiles (per device where they fit): " + ", ".join(shipped))
    return 0


def _write_all(args: argparse.Namespace) -> int:
    if not args.out_dir:
        raise InputError("--all needs --out-dir DIR", field="--out-dir")
    out_dir = Path(args.out_dir)
    rows = []
    for dev, file_slug, model, tp in shipped_profiles():
        m = calibrated_model(DEVICES[dev], get_model(model), tp)
        profile = cost_profile(m)
        path = out_dir / dev / f"{file_slug}.yaml"
        write_profile(profile, path)
        rows.append(
            [str(path), len(profile.points), profile.fit.cv_error_pct if profile.fit else None]
        )
    if args.json:
        print_json([dict(zip(("path", "points", "cv_error_pct"), r, strict=True)) for r in rows])
    else:
        print(table(rows, ["profile", "points", "cv error %"]))
    return 0
