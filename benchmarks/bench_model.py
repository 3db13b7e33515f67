"""Forward latency of profiler/runtime/model.py's DecoderLM vs transformers on the same weights.

For each (config, dtype, batch, query tokens) the two runtimes run a forward of q new
tokens per sequence over a cached context, interleaved repeat by repeat so machine noise
hits both alike; the program prints medians (ms) and the ratio ours / transformers. A
training-step row (forward + backward, no cache) is printed for the demo config.

Run: .venv/bin/python benchmarks/bench_model.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from spectune.profiler.runtime.checkpoint import save_checkpoint
from spectune.profiler.runtime.config import ModelConfig
from spectune.profiler.runtime.kvcache import KVCache
from spectune.profiler.runtime.model import random_model

CONFIGS = {
    # The byte-level demo target (profiler/demo/train.py TARGET_RECIPE): ~4.9M parameters.
    "demo-4.9M": ModelConfig(
        vocab_size=256,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
    # A ~100M Llama-style model (DESIGN.md §5 measured this size).
    "llama-110M": ModelConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
    ),
}


def hf_model(model, tmp):
    import transformers

    save_checkpoint(model, tmp)
    return transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=model.dtype).eval()


def bench_point(ours, hf, batch, q, context, repeats):
    cfg = ours.config
    gen = torch.Generator().manual_seed(0)
    ctx_ids = torch.randint(0, cfg.vocab_size, (batch, context), generator=gen)
    new_ids = torch.randint(0, cfg.vocab_size, (batch, q), generator=gen)
    cache = KVCache(cfg, batch, context + q)
    ours(ctx_ids, cache)
    cache.commit(num_tokens=context)
    hf_past = hf(ctx_ids, use_cache=True).past_key_values
    pos = torch.arange(context, context + q).expand(batch, q)

    def run_ours():
        ours(new_ids, cache)

    def run_hf():
        # A fresh copy of the prefilled cache each time: transformers appends in place.
        past = copy.deepcopy(hf_past)
        t0 = time.perf_counter()
        hf(new_ids, past_key_values=past, position_ids=pos, use_cache=True)
        return time.perf_counter() - t0

    a, b = [], []
    for _ in range(2):
        run_ours()
        run_hf()
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_ours()
        a.append(time.perf_counter() - t0)
        b.append(run_hf())
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3


def bench_train(cfg, batch, seq, repeats):
    model = random_model(cfg, seed=0, initializer_range=0.02).train()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer points and repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's); 1 avoids thread-barrier "
        "stalls when the machine is shared",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 7 if args.quick else 21
    points = (
        [(1, 1), (8, 1), (1, 16), (8, 4)]
        if args.quick
        else [(1, 1), (1, 4), (1, 16), (8, 1), (8, 4), (8, 16)]
    )
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, context 512, "
        f"median of {repeats} interleaved repeats"
    )
    print(f"{'config':12} {'dtype':9} {'B':>2} {'q':>3} {'ours ms':>8} {'hf ms':>8} {'ratio':>6}")
    for name, cfg in CONFIGS.items():
        for dtype in (torch.float32, torch.bfloat16):
            ours = random_model(cfg, seed=0, dtype=dtype)
            with tempfile.TemporaryDirectory() as tmp:
                hf = hf_model(ours, tmp)
            with torch.inference_mode():
                for batch, q in points:
                    a, b = bench_point(ours, hf, batch, q, 512, repeats)
                    print(
                        f"{name:12} {str(dtype)[6:]:9} {batch:2d} {q:3d} {a:8.2f} {b:8.2f} "
                        f"{a / b:6.2f}",
                        flush=True,
                    )
    cfg = CONFIGS["demo-4.9M"]
    ms = bench_train(cfg, 8 if args.quick else 32, 257, 3)
    print(f"train step demo-4.9M fp32 batch {8 if args.quick else 32} x 256: {ms:.0f} ms")


if __name__ == "__main__":
    main()
