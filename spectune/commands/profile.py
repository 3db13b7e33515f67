"""``spectune profile``: the measurement commands (latency, acceptance, the demo pair).

The handlers import torch (profiler/); the parser below does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spectune.output import print_json, table
from spectune.simulator.errors import InputError

from .profile_engine import default_acceptance_path

DESCRIPTION = """\
Measure profiles on this device.

  latency      time real forward passes over batch x query tokens x context and write a
               latency profile (resumable: rerun the same command after an interruption)
  acceptance   measure how often a drafter's tokens are accepted by a target on a prompt
               file and write an acceptance profile
  train-demo   train (or reuse) the byte-level demo target and drafter

Each kind has its own --help. Times in milliseconds in the profiles.
"""

EPILOG = """\
examples:
  spectune profile train-demo --out models/
  spectune profile latency --model models/stdlib-byte-target --quick --threads 1 --clock cpu
  spectune profile latency --model ctrl:0.03 --out /tmp/ctrl.yaml --batches 1,4 --query 1,5
  spectune profile latency --engine vllm --model models/stdlib-byte-target --quick
  spectune profile acceptance --engine vllm --target models/stdlib-byte-target \\
      --drafter ngram --k 4 --prompts examples/prompts/stdlib.txt
  spectune profile acceptance --target models/stdlib-byte-target \\
      --drafter models/stdlib-byte-drafter --prompts examples/prompts/stdlib.txt
  spectune profile acceptance --target ctrl:0.1 --drafter self:2 --prompts p.txt --temperature 1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="measure latency / acceptance profiles on this device (needs torch)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="profile_command", metavar="KIND")

    lat = sub.add_parser(
        "latency", help="time forward passes; write hwprofiles/<device>/<model>.yaml"
    )
    lat.add_argument(
        "--engine",
        default="native",
        choices=["native", "vllm"],
        help="native: spectune's own forward passes (default); vllm: the model as vLLM's "
        "server runs it (per-step timings from inside vLLM, plus its host time per step; "
        "needs the vllm extra, docs/engines.md)",
    )
    lat.add_argument(
        "--model", required=True, help="checkpoint DIR, CONFIG.json (random weights) or ctrl:EPS"
    )
    lat.add_argument(
        "--out", help="profile YAML (default hwprofiles/<device>/<model>[-<dtype>].yaml)"
    )
    lat.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    lat.add_argument("--quick", action="store_true", help="small grid: a few minutes on a CPU")
    lat.add_argument("--batches", help="comma-separated batch sizes (overrides the grid's)")
    lat.add_argument("--query", help="comma-separated query tokens per sequence")
    lat.add_argument("--contexts", help="comma-separated context lengths (tokens in the KV cache)")
    lat.add_argument("--max-tokens", type=int, help="skip points with batch x query above this")
    lat.add_argument(
        "--repeats", type=int, default=None, help="passes over the grid (default 5; quick 3)"
    )
    lat.add_argument(
        "--max-repeats",
        type=int,
        default=None,
        help="extra passes over points whose median is not yet settled, up to this many "
        "passes in all (default 5x repeats; 0 = none)",
    )
    lat.add_argument(
        "--target-rse",
        type=float,
        default=0.015,
        help="a point is settled when its median's relative standard error is <= this",
    )
    lat.add_argument(
        "--warmup", type=int, default=1, help="untimed forwards at each visit of a point"
    )
    lat.add_argument(
        "--inner", type=int, default=5, help="timed forwards per visit; the fastest is kept"
    )
    lat.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    lat.add_argument("--seed", type=int, default=0)
    lat.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default torch's); on a shared CPU, 1 thread avoids "
        "stalls at every op when a sibling thread is descheduled",
    )
    lat.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: wall clock (CUDA events on GPUs); cpu: the thread's CPU time, needs "
        "--threads 1 on a CPU (robust on a shared machine)",
    )
    lat.add_argument(
        "--prefills", help="--engine vllm: comma-separated prompt lengths of prefill points"
    )
    lat.add_argument(
        "--eager",
        action="store_true",
        help="--engine vllm: enforce_eager (faster start-up, slower decode on CPU); the "
        "profile must match the mode of the runs it predicts",
    )
    lat.add_argument(
        "--kv-cache-gib", type=float, default=1.0, help="--engine vllm: KV cache size (GiB)"
    )
    lat.add_argument(
        "--vllm-frontend",
        default="server",
        choices=["server", "offline"],
        help="--engine vllm: vLLM's OpenAI server (default; what validate runs) or its "
        "offline LLM engine",
    )
    lat.add_argument("--no-progress", action="store_true")
    lat.add_argument("--json", action="store_true", help="print a JSON summary")
    lat.set_defaults(func=run_latency)

    acc = sub.add_parser(
        "acceptance", help="measure drafter acceptance; write an acceptance profile"
    )
    acc.add_argument(
        "--engine",
        default="native",
        choices=["native", "vllm"],
        help="native: exact teacher-forced acceptance (default); vllm: vLLM's own counters "
        "(per-request per-step accepted/drafted) from speculative runs at --k",
    )
    acc.add_argument("--target", required=True, help="checkpoint DIR or ctrl:EPS")
    acc.add_argument("--drafter", required=True, help="checkpoint DIR, ngram, or self:N")
    acc.add_argument(
        "--prompts", required=True, help="prompt file (.txt blocks split by '---' lines, or .jsonl)"
    )
    acc.add_argument("--temperature", type=float, default=0.0)
    acc.add_argument("--k", type=int, default=8, help="chain positions a_1..a_K (default 8)")
    acc.add_argument("--width", type=int, default=8, help="ranked candidates p_1..p_W (default 8)")
    acc.add_argument("--max-new-tokens", type=int, default=128)
    acc.add_argument("--dtype", default="fp32", choices=["bf16", "fp16", "fp32"])
    acc.add_argument("--dataset", help="dataset name in the profile (default: prompt file stem)")
    acc.add_argument("--seed", type=int, default=0)
    acc.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    acc.add_argument(
        "--out", help="profile YAML (default acceptance/<target>__<drafter>__<dataset>__t<T>.yaml)"
    )
    acc.add_argument(
        "--ngram-window",
        default="1-3",
        help="--engine vllm, --drafter ngram: prompt_lookup_min-max (default 1-3)",
    )
    acc.add_argument(
        "--eager", action="store_true", help="--engine vllm: enforce_eager (faster start-up)"
    )
    acc.add_argument(
        "--vllm-frontend",
        default="server",
        choices=["server", "offline"],
        help="--engine vllm: vLLM's OpenAI server (default) or its offline LLM engine",
    )
    acc.add_argument("--json", action="store_true", help="print the profile as JSON")
    acc.set_defaults(func=run_acceptance)

    tr = sub.add_parser("train-demo", help="train (or reuse) the byte-level demo target + drafter")
    tr.add_argument(
        "--out", default="models", help="folder receiving the checkpoints (default models/)"
    )
    tr.add_argument("--work-dir", default=".cache/train-demo", help="resumable training state")
    tr.add_argument("--threads", type=int, default=None, help="torch threads")
    tr.set_defaults(func=run_train_demo, out_is_folder=True)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def run_latency(args: argparse.Namespace) -> int:
    if args.engine == "vllm":
        from .profile_engine import run_vllm_latency

        return run_vllm_latency(args)
    from spectune.profiler.measure.grid import (
        FULL_GRID,
        QUICK_GRID,
        Grid,
        ProfileSettings,
        parse_int_list,
    )
    from spectune.profiler.measure.latency import profile_latency
    from spectune.profiler.runtime.device import device_slug, resolve_device, set_threads
    from spectune.profiler.runtime.specs import load_model

    threads = set_threads(args.threads)
    dev = resolve_device(args.device)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    settings = ProfileSettings(
        dtype=args.dtype,
        repeats=repeats,
        warmup=args.warmup,
        inner=args.inner,
        clock=args.clock,
        max_repeats=args.max_repeats if args.max_repeats is not None else 5 * repeats,
        target_rse=args.target_rse,
        device=str(dev),
        seed=args.seed,
    )
    settings.validate()
    base = QUICK_GRID if args.quick else FULL_GRID
    grid = Grid(
        batches=parse_int_list(args.batches, "--batches") if args.batches else base.batches,
        queries=parse_int_list(args.query, "--query") if args.query else base.queries,
        contexts=parse_int_list(args.contexts, "--contexts", minimum=0)
        if args.contexts
        else base.contexts,
        max_tokens=args.max_tokens if args.max_tokens is not None else base.max_tokens,
    )
    if args.max_tokens is not None and args.max_tokens < 1:
        raise InputError(f"must be >= 1, got {args.max_tokens}", field="--max-tokens")
    loaded = load_model(args.model, dtype=args.dtype, device=str(dev))
    name = loaded.name if args.dtype == "bf16" else f"{loaded.name}-{args.dtype}"
    out = (
        Path(args.out)
        if args.out
        else Path("hwprofiles") / device_slug(dev, threads) / f"{name}.yaml"
    )
    t0 = time.perf_counter()
    profile = profile_latency(
        loaded.model, loaded.name, out, grid, settings, progress=not args.no_progress
    )
    wall_s = time.perf_counter() - t0
    summary = {
        "out": str(out),
        "points": len(profile.points),
        "wall_s": round(wall_s, 1),
        "cv_error_pct": profile.fit.cv_error_pct if profile.fit else None,
        "cv_max_error_pct": (profile.fit.params.get("cv_max_error_pct") if profile.fit else None),
        "device": profile.device.name,
        "dtype": profile.device.dtype,
    }
    if args.json:
        print_json(summary)
    else:
        print(table([[k, v] for k, v in summary.items()], ["latency profile", "value"]))
    return 0


# --------------------------------------------------------------------------- acceptance


def _drafter_spec(text: str, target, dtype: str):
    from spectune.profiler.measure.acceptance import DrafterSpec
    from spectune.profiler.runtime.specs import load_model

    if text == "ngram":
        return DrafterSpec(kind="ngram", name="ngram")
    if text.startswith("self:"):
        raw = text.split(":", 1)[1]
        n_layers = target.config.num_hidden_layers
        if not raw.isdigit() or not 1 <= int(raw) < n_layers:
            raise InputError(
                f"self:N needs 1 <= N < {n_layers} (the target's layers), got {text!r}",
                field="--drafter",
            )
        return DrafterSpec(kind="self", name=f"self-{int(raw)}", self_layers=int(raw))
    loaded = load_model(text, dtype=dtype)
    return DrafterSpec(kind="draft_model", name=loaded.name, model=loaded.model)


def run_acceptance(args: argparse.Namespace) -> int:
    if args.engine == "vllm":
        from .profile_engine import run_vllm_acceptance

        return run_vllm_acceptance(args)
    from tqdm import tqdm

    from spectune.profiler.measure.acceptance import build_profile, measure_acceptance
    from spectune.profiler.runtime.device import set_threads
    from spectune.profiler.runtime.prompts import read_prompts, tokenize_prompts
    from spectune.profiler.runtime.specs import load_model
    from spectune.simulator.schema import dump_yaml

    if not args.temperature >= 0:
        raise InputError(f"must be >= 0, got {args.temperature}", field="--temperature")
    set_threads(args.threads)
    prompts = read_prompts(args.prompts)
    target = load_model(args.target, dtype=args.dtype)
    drafter = _drafter_spec(args.drafter, target.model, args.dtype)
    ids = tokenize_prompts(prompts, target.tokenizer, target.model.config.vocab_size, args.prompts)
    dataset = args.dataset or Path(args.prompts).stem
    bar = tqdm(total=len(ids), desc="acceptance", unit="req", leave=False, disable=None)
    t0 = time.perf_counter()
    try:
        reqs, _ = measure_acceptance(
            target.model,
            drafter,
            ids,
            args.temperature,
            k=args.k,
            width=args.width,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            progress=lambda n: bar.update(n - bar.n),
        )
    finally:
        bar.close()
    how = (
        f"spectune profile acceptance: {len(ids)} prompts, {args.max_new_tokens} target tokens "
        f"each ({'greedy' if args.temperature == 0 else f'sampled at T={args.temperature:g}'}), "
        f"{args.dtype}; "
        + (
            "exact teacher-forced greedy agreement"
            if args.temperature == 0
            else "expected acceptance sum(min(p, q)) along the trajectory"
        )
        + f"; {time.perf_counter() - t0:.0f} s"
    )
    profile = build_profile(
        reqs, target.name, drafter, dataset, args.temperature, args.k, how, seed=args.seed
    )
    out = (
        Path(args.out)
        if args.out
        else default_acceptance_path(target.name, drafter.name, dataset, args.temperature)
    )
    dump_yaml(profile, out)
    if args.json:
        print_json(profile.model_dump(mode="json", by_alias=True, exclude_none=True))
        return 0
    a = profile.acceptance
    c = profile.counts
    rows = [
        ["out", str(out)],
        ["per_position a_1..a_K", " ".join(f"{x:.3f}" for x in a.per_position)],
        ["ranked p_1..p_W", " ".join(f"{x:.3f}" for x in a.ranked or [])],
        ["per-request spread (std)", a.spread],
        ["requests", c.num_requests],
        [
            f"mean accepted length (k={args.k}, incl. bonus)",
            1 + c.num_accepted_tokens / max(1, c.num_steps),
        ],
    ]
    print(
        table(
            rows, [f"{target.name} <- {drafter.name} ({dataset}, T={args.temperature:g})", "value"]
        )
    )
    return 0


# --------------------------------------------------------------------------- train-demo


def run_train_demo(args: argparse.Namespace) -> int:
    from spectune.profiler.demo.train import train_demo

    if args.threads is not None and args.threads < 1:
        raise InputError(f"must be >= 1, got {args.threads}", field="--threads")
    dirs = train_demo(
        args.out, args.work_dir, threads=args.threads, log=lambda s: print(s, flush=True)
    )
    for name, d in dirs.items():
        print(f"{name}: {d}")
    return 0
