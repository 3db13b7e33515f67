"""Is vLLM's speculative decoding lossless on the shipped models? Greedy outputs of n-gram
and draft-model SD against plain decoding, token for token.

Each configuration is one vLLM server (eager mode: the check is about tokens, not speed);
the same prompts (the stdlib prompt file) are served one at a time (batch 1) and all
together (batch up to 8), in fp32 (exact arithmetic order does not depend on the batch
shape) and in bf16 (where a different batch composition can flip an argmax tie). Prints
identical requests per comparison.

    .venv/bin/python benchmarks/vllm_lossless.py [--dtypes float32,bfloat16] [--tokens 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spectune.profiler.engines.vllm_config import VllmSettings, VllmSpec
from spectune.profiler.engines.vllm_server import VllmServer
from spectune.profiler.live import LiveWorkload
from spectune.profiler.runtime.prompts import read_prompts
from spectune.simulator.workload import RequestSet

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "models" / "stdlib-byte-target"
DRAFTER = REPO / "models" / "stdlib-byte-drafter"
SPECS = {
    "plain": None,
    "ngram k=3": VllmSpec("ngram", 3, 1, 3),
    "draft_model k=3": VllmSpec("draft_model", 3, model=str(DRAFTER)),
}


def workloads(tokens: int, n: int) -> dict[str, LiveWorkload]:
    texts = [p for p in read_prompts(REPO / "examples" / "prompts" / "stdlib.txt")]
    ids = [np.frombuffer(t.encode(), dtype=np.uint8).astype(np.int64)[:256] for t in texts][:n]
    lens = np.array([len(x) for x in ids])
    out = np.full(n, tokens)
    return {
        "batch 1": LiveWorkload(RequestSet(lens, out, None, "closed", concurrency=1), ids, 0),
        "batch 8": LiveWorkload(RequestSet(lens, out, np.zeros(n), "offline"), ids, 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--work", default="/tmp/spectune-vllm-lossless")
    args = ap.parse_args()
    wls = workloads(args.tokens, args.prompts)
    for dtype in args.dtypes.split(","):
        outs: dict[tuple[str, str], list[list[int]]] = {}
        for name, spec in SPECS.items():
            st = VllmSettings(
                model=str(TARGET),
                dtype=dtype,
                max_num_seqs=8,
                spec=spec,
                enforce_eager=True,
                kv_cache_gib=0.5,
            )
            t0 = time.perf_counter()
            with VllmServer(st, args.work) as srv:
                for wname, wl in wls.items():
                    outs[(name, wname)] = srv.run(wl).outputs
            print(f"{dtype} {name}: served in {time.perf_counter() - t0:.0f} s", flush=True)
        for wname in wls:
            ref = outs[("plain", wname)]
            for name in SPECS:
                if name == "plain":
                    continue
                same = sum(a == b for a, b in zip(outs[(name, wname)], ref, strict=True))
                print(f"{dtype} {wname}: {name} vs plain: {same}/{len(ref)} identical")
        ref1, ref8 = outs[("plain", "batch 1")], outs[("plain", "batch 8")]
        same = sum(a == b for a, b in zip(ref1, ref8, strict=True))
        print(f"{dtype}: plain batch 1 vs batch 8: {same}/{len(ref1)} identical")


if __name__ == "__main__":
    main()
