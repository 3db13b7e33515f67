"""``spectune profile {latency,acceptance} --engine vllm``: profiles measured through vLLM.

The handlers behind :mod:`.profile`'s ``--engine vllm``: the latency profile of a model as
vLLM's server runs it (:mod:`spectune.profiler.measure.engine_latency`) and acceptance
from vLLM's own per-request counters (:mod:`spectune.profiler.measure.engine_acceptance`).
vLLM is imported only here, inside the handlers (it is an optional extra).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from spectune.output import print_json, table
from spectune.simulator.errors import InputError

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
WORK_DIR = Path(".cache") / "spectune-vllm"


def default_acceptance_path(target: str, drafter: str, dataset: str, temperature: float) -> Path:
    return Path("acceptance") / f"{target}__{drafter}__{dataset}__t{temperature:g}.yaml"


def _grid(args: argparse.Namespace):
    from spectune.profiler.measure.engine_latency import QUICK_ENGINE_GRID, EngineGrid
    from spectune.profiler.measure.grid import parse_int_list

    base = QUICK_ENGINE_GRID if args.quick else EngineGrid()
    return EngineGrid(
        batches=parse_int_list(args.batches, "--batches") if args.batches else base.batches,
        widths=parse_int_list(args.query, "--query") if args.query else base.widths,
        contexts=parse_int_list(args.contexts, "--contexts") if args.contexts else base.contexts,
        prefills=parse_int_list(args.prefills, "--prefills") if args.prefills else base.prefills,
        decode_tokens=base.decode_tokens,
    )


def run_vllm_latency(args: argparse.Namespace) -> int:
    from spectune.profiler.engines.processes import sigterm_as_interrupt
    from spectune.profiler.engines.vllm_config import check_model_dir, require_vllm
    from spectune.profiler.measure.engine_latency import profile_vllm_latency

    version = require_vllm()
    model = check_model_dir(args.model)
    passes = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    if passes < 1:
        raise InputError(f"must be >= 1, got {passes}", field="--repeats")
    if args.kv_cache_gib <= 0:
        raise InputError(f"must be > 0, got {args.kv_cache_gib}", field="--kv-cache-gib")
    mode = "eager" if args.eager else "compiled"
    out = (
        Path(args.out)
        if args.out
        else Path("hwprofiles")
        / f"vllm-{version.split('+')[0]}-cpu-{mode}"
        / f"{Path(model).name}.yaml"
    )
    with sigterm_as_interrupt():
        _profile, summary = profile_vllm_latency(
            model,
            out,
            _grid(args),
            passes,
            eager=args.eager,
            dtype=DTYPE_NAMES[args.dtype],
            kv_cache_gib=args.kv_cache_gib,
            work_dir=WORK_DIR,
            seed=args.seed,
            progress=not args.no_progress,
            frontend=args.vllm_frontend,
            clock=args.clock,
        )
    if args.json:
        print_json(summary)
    else:
        rows = [[k, v] for k, v in summary.items()]
        print(table(rows, ["vLLM latency profile", "value"]))
    return 0


def _spec(args: argparse.Namespace):
    from spectune.profiler.engines.vllm_config import VllmSpec, check_model_dir

    if args.drafter == "ngram":
        lo, _, hi = args.ngram_window.partition("-")
        try:
            lo_i, hi_i = int(lo), int(hi or lo)
        except ValueError:
            raise InputError(
                f"expected MIN-MAX, e.g. 1-3, got {args.ngram_window!r}", field="--ngram-window"
            ) from None
        return VllmSpec("ngram", args.k, lo_i, hi_i), f"ngram-{lo_i}-{hi_i}", "ngram"
    if args.drafter.startswith("self:"):
        raise InputError("vLLM has no layer-skip (self:N) drafter", field="--drafter")
    path = check_model_dir(args.drafter, field="--drafter")
    return VllmSpec("draft_model", args.k, model=path), Path(path).name, "draft_model"


def run_vllm_acceptance(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from spectune.profiler.engines.processes import sigterm_as_interrupt
    from spectune.profiler.engines.vllm_config import VllmSettings, check_model_dir, require_vllm
    from spectune.profiler.engines.vllm_server import VllmServer, dump_requests
    from spectune.profiler.live import LiveWorkload
    from spectune.profiler.measure.engine_acceptance import build_engine_profile
    from spectune.profiler.runtime.prompts import read_prompts, tokenize_prompts
    from spectune.simulator.schema import dump_yaml
    from spectune.simulator.workload import RequestSet

    if args.temperature != 0:
        raise InputError(
            "--engine vllm measures greedy acceptance only (temperature 0)", field="--temperature"
        )
    if not 1 <= args.k <= 16:
        raise InputError(f"must be in 1..16, got {args.k}", field="--k")
    version = require_vllm()
    target = check_model_dir(args.target, field="--target")
    cfg = json.loads((Path(target) / "config.json").read_text())
    spec, drafter_name, kind = _spec(args)
    prompts = read_prompts(args.prompts)
    ids = tokenize_prompts(
        prompts, cfg.get("spectune_tokenizer"), int(cfg.get("vocab_size", 1 << 30)), args.prompts
    )
    dataset = args.dataset or Path(args.prompts).stem
    n = len(ids)
    req = RequestSet(
        prompt_tokens=np.array([len(x) for x in ids], dtype=np.int64),
        output_tokens=np.full(n, args.max_new_tokens, dtype=np.int64),
        arrival_s=np.zeros(n),
        mode="offline",
    )
    wl = LiveWorkload(req, [np.asarray(x, dtype=np.int64) for x in ids], args.seed)
    settings = VllmSettings(
        model=target,
        dtype=DTYPE_NAMES[args.dtype],
        max_num_seqs=16,
        spec=spec,
        enforce_eager=args.eager,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    if args.vllm_frontend == "offline":
        from spectune.profiler.engines.vllm_offline import VllmOffline

        engine = VllmOffline(settings, WORK_DIR)
    else:
        engine = VllmServer(settings, WORK_DIR)
    with sigterm_as_interrupt(), engine:
        res = engine.run(wl)
    mode = settings.mode
    how = (
        f"spectune profile acceptance --engine vllm: vLLM {version} {engine.name} ({mode}), "
        f"{spec.label()}, {n} prompts x {args.max_new_tokens} tokens, greedy, "
        f"max_num_seqs 16; per-request per_step_accepted/per_step_drafted; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    profile = build_engine_profile(
        res.requests or [],
        args.k,
        target=Path(target).name,
        drafter=drafter_name,
        drafter_kind=kind,
        dataset=dataset,
        how=how,
        counters=res.counters,
    )
    out = (
        Path(args.out)
        if args.out
        else default_acceptance_path(
            Path(target).name, f"{drafter_name}-vllm-k{args.k}", dataset, 0
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_yaml(profile, out)
    dump_requests(out.with_name(out.stem + ".requests.jsonl"), res)
    if args.json:
        print_json(profile.model_dump(mode="json", by_alias=True, exclude_none=True))
        return 0
    a, c = profile.acceptance, profile.counts
    rows = [
        ["out", str(out)],
        ["per_position a_1..a_k (conditional)", " ".join(f"{x:.3f}" for x in a.per_position)],
        ["per-request spread (std)", round(a.spread, 4)],
        ["requests / verify steps", f"{c.num_requests} / {c.num_steps}"],
        ["mean acceptance length (bonus incl.)", round(1 + c.num_accepted_tokens / c.num_steps, 4)],
        ["counters", (profile.provenance.how.rsplit("; ", 1)[-1] if profile.provenance else "")],
    ]
    print(table(rows, [f"{Path(target).name} <- {drafter_name} (vLLM, k={args.k})", "value"]))
    return 0
