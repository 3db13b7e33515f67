"""Live speedup of speculative decoding over plain decoding on this machine (the live engine).

Two demo pairs, each through :class:`SpecEngine` at batch 1 and 8:

- ``--pair ctrl``: the controllable pair (DESIGN.md §5: a random byte-level target whose
  first 2 layers draft for it, acceptance set by EPS): plain decoding, self-drafting chains
  (k = 2, 4), a small tree, the first layers as a separate draft model, n-gram lookup;
- ``--pair stdlib``: the trained byte-level pair in ``models/`` on the held-out stdlib
  prompts (examples/prompts/stdlib.txt): plain decoding, the distilled drafter (k = 2, 4,
  a tree), the target's first 2 layers (self:2 k=4), n-gram lookup (k = 4).

Repeats are interleaved (plain, spec, plain, spec, ...) so machine noise hits all configs
alike. Column ``=plain`` counts the sequences whose output equals plain greedy decoding: in
bf16 (the trained pair's dtype) a verify pass over k+1 positions can round a near-tie
differently from a 1-token pass (e.g. top-2 logits 5.5515 vs 5.5465 in fp32), so a
sequence may diverge there; in fp32 the engine is exact (tests/profiler, losslessness).
Reported: median tok/s,
speedup = median spec / median plain, mean accepted length (bonus included), and median
draft / verify / overhead ms per decode step.

    .venv/bin/python benchmarks/bench_engine.py [--pair ctrl|stdlib] [--eps 0.03]
        [--repeats 3] [--threads N] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from spectune.profiler.native.drafters import ModelDrafter, NgramDrafter
from spectune.profiler.native.engine import SpecEngine
from spectune.profiler.native.generate import generate
from spectune.profiler.runtime.config import ModelConfig
from spectune.profiler.runtime.model import controllable_pair
from spectune.simulator.tree import Tree

# The byte demo target's shape (profiler/runtime/specs.py CTRL_CONFIG).
CONFIG = ModelConfig(
    vocab_size=256,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)
DRAFT_LAYERS = 2
TREE = [[0], [1], [0, 0], [1, 0], [0, 0, 0], [0, 0, 0, 0]]
REPO = Path(__file__).resolve().parent.parent


def random_prompts(n: int, length: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (length + 8 * i,), generator=gen).tolist() for i in range(n)]


def ctrl_setup(args: argparse.Namespace) -> tuple[str, object, dict, object]:
    target = controllable_pair(CONFIG, args.eps, DRAFT_LAYERS, seed=0)
    configs = {
        "plain": lambda: (None, {}),
        "self:2 k=2": lambda: (
            ModelDrafter(target, DRAFT_LAYERS, share_target_cache=True),
            {"k": 2},
        ),
        "self:2 k=4": lambda: (
            ModelDrafter(target, DRAFT_LAYERS, share_target_cache=True),
            {"k": 4},
        ),
        "self:2 tree6": lambda: (
            ModelDrafter(target, DRAFT_LAYERS, share_target_cache=True),
            {"tree": Tree.from_paths(TREE)},
        ),
        "draft_model k=4": lambda: (ModelDrafter(target.first_layers(DRAFT_LAYERS)), {"k": 4}),
        "ngram k=4": lambda: (NgramDrafter(1, 3), {"k": 4}),
    }
    title = f"ctrl pair eps={args.eps}, {CONFIG.num_hidden_layers} layers (drafter {DRAFT_LAYERS})"
    return title, target, configs, lambda n: random_prompts(n, args.prompt_len)


def stdlib_setup(args: argparse.Namespace) -> tuple[str, object, dict, object]:
    from spectune.profiler.runtime.prompts import read_prompts, tokenize_prompts
    from spectune.profiler.runtime.specs import load_model

    target = load_model(str(REPO / "models" / "stdlib-byte-target"))
    drafter = load_model(str(REPO / "models" / "stdlib-byte-drafter")).model
    tm = target.model
    path = REPO / "examples" / "prompts" / "stdlib.txt"
    all_prompts = tokenize_prompts(read_prompts(path), target.tokenizer, 256, str(path))
    configs = {
        "plain": lambda: (None, {}),
        "drafter k=2": lambda: (ModelDrafter(drafter), {"k": 2}),
        "drafter k=4": lambda: (ModelDrafter(drafter), {"k": 4}),
        "drafter tree6": lambda: (ModelDrafter(drafter), {"tree": Tree.from_paths(TREE)}),
        "self:2 k=4": lambda: (ModelDrafter(tm, DRAFT_LAYERS, share_target_cache=True), {"k": 4}),
        "ngram k=4": lambda: (NgramDrafter(1, 3), {"k": 4}),
    }
    # The same 16 prompts at every batch cap: at batch 1 they run one after another.
    title = "stdlib byte pair (models/), 16 held-out stdlib prompts at every batch cap"
    return title, tm, configs, lambda n: all_prompts[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=("ctrl", "stdlib"), default="ctrl")
    ap.add_argument("--eps", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = stdlib_setup if args.pair == "stdlib" else ctrl_setup
    title, target, configs, prompts = setup(args)
    print(
        f"{title}, torch threads {torch.get_num_threads()}, {args.new_tokens} new tokens, "
        f"{args.repeats} interleaved repeats; medians"
    )
    for batch in (int(b) for b in args.batches.split(",")):
        ps = prompts(batch)
        max_len = max(len(p) for p in ps) + args.new_tokens + 16
        runs: dict[str, list] = {name: [] for name in configs}
        same: dict[str, int] = {}
        reference = None
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name, make in configs.items():
                    drafter, spec = make()
                    eng = SpecEngine(target, drafter, max_batch=batch, max_len=max_len, **spec)
                    generate(eng, ps[:1], 4)  # warm-up
                    t0 = time.perf_counter()
                    res = generate(eng, ps, args.new_tokens)
                    runs[name].append((time.perf_counter() - t0, res))
                    if reference is None:
                        reference = res.outputs
                    same[name] = sum(a == b for a, b in zip(res.outputs, reference, strict=True))
        plain = statistics.median(r.tok_per_s for _, r in runs["plain"])
        print(f"\nbatch {batch}")
        print(
            f"{'config':<18}{'tok/s':>8}{'speedup':>9}{'acc.len':>9}"
            f"{'draft ms':>10}{'verify ms':>11}{'overh. ms':>11}{'=plain':>8}"
        )
        for name, rs in runs.items():
            tps = statistics.median(r.tok_per_s for _, r in rs)
            st = [r.stats.to_dict() for _, r in rs]
            med = lambda key, st=st: statistics.median(s[key] for s in st)
            print(
                f"{name:<18}{tps:8.1f}{tps / plain:9.2f}{rs[0][1].stats.mean_accepted_len:9.2f}"
                f"{med('draft_ms_per_step'):10.2f}{med('verify_ms_per_step'):11.2f}"
                f"{med('overhead_ms_per_step'):11.2f}{same[name]:>5d}/{len(ps)}"
            )


if __name__ == "__main__":
    main()
