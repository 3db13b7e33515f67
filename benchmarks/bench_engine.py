"""Live speedup of speculative decoding over plain decoding on this machine (the live engine).

Runs the controllable demo pair (DESIGN.md §5: a random byte-level target whose first 2
layers draft for it, acceptance set by EPS) through :class:`SpecEngine` at batch 1 and 8:
plain decoding, self-drafting chains (k = 2, 4), a small tree, and n-gram lookup. Repeats
are interleaved (plain, spec, plain, spec, ...) so machine noise hits all configs alike;
reported: median tok/s, speedup = median spec / median plain, mean accepted length
(bonus included), and median draft / verify / overhead ms per decode step.

    .venv/bin/python benchmarks/bench_engine.py [--eps 0.03] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spectune.profiler.drafters import ModelDrafter, NgramDrafter
from spectune.profiler.engine import SpecEngine
from spectune.profiler.model import ModelConfig, controllable_pair
from spectune.simulator.tree import Tree

# The byte demo target's shape (profiler/demo.py CTRL_CONFIG).
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


def prompts(n: int, length: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (length + 8 * i,), generator=gen).tolist() for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    print(
        f"ctrl pair eps={args.eps}, {CONFIG.num_hidden_layers} layers (drafter {DRAFT_LAYERS}), "
        f"torch threads {torch.get_num_threads()}, {args.new_tokens} new tokens, "
        f"{args.repeats} interleaved repeats; medians"
    )
    for batch in (int(b) for b in args.batches.split(",")):
        ps = prompts(batch, args.prompt_len)
        max_len = max(len(p) for p in ps) + args.new_tokens + 16
        runs: dict[str, list] = {name: [] for name in configs}
        reference = None
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name, make in configs.items():
                    drafter, spec = make()
                    eng = SpecEngine(target, drafter, max_batch=batch, max_len=max_len, **spec)
                    eng.generate(ps[:1], 4)  # warm-up
                    t0 = time.perf_counter()
                    res = eng.generate(ps, args.new_tokens)
                    runs[name].append((time.perf_counter() - t0, res))
                    if reference is None:
                        reference = res.outputs
                    assert res.outputs == reference, f"{name}: output differs from plain"
        plain = statistics.median(r.tok_per_s for _, r in runs["plain"])
        print(f"\nbatch {batch}")
        print(
            f"{'config':<18}{'tok/s':>8}{'speedup':>9}{'acc.len':>9}"
            f"{'draft ms':>10}{'verify ms':>11}{'overh. ms':>11}"
        )
        for name, rs in runs.items():
            tps = statistics.median(r.tok_per_s for _, r in rs)
            st = [r.stats.to_dict() for _, r in rs]
            med = lambda key, st=st: statistics.median(s[key] for s in st)
            print(
                f"{name:<18}{tps:8.1f}{tps / plain:9.2f}{rs[0][1].stats.mean_accepted_len:9.2f}"
                f"{med('draft_ms_per_step'):10.2f}{med('verify_ms_per_step'):11.2f}"
                f"{med('overhead_ms_per_step'):11.2f}"
            )


if __name__ == "__main__":
    main()
