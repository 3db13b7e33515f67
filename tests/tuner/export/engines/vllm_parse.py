"""Feed emitted ``vllm serve`` command lines to vLLM's own parser (run in a subprocess).

usage: python vllm_parse.py CASES.json -> one line ``RESULT {json}`` on stdout.
CASES.json: ``[{"id": str, "argv": ["vllm", "serve", MODEL, *flags]}]``. For each case:
``EngineArgs.add_cli_args(FlexibleArgumentParser())`` parses the flags (MODEL as
``--model``, as ``vllm serve`` does with its positional), ``EngineArgs.from_cli_args``
builds the arguments and ``create_engine_config()`` runs every check ``vllm serve`` runs
before it loads weights. A batch-size schedule is also put through
``build_dynamic_sd_schedule_lookup``, which vLLM otherwise runs only when its scheduler
starts. Runs on vLLM's CPU build: no GPU, no weights needed.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


def main() -> None:
    t0 = time.perf_counter()
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    import vllm
    from vllm.engine.arg_utils import EngineArgs

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser
    out = {"version": vllm.__version__, "import_s": time.perf_counter() - t0, "results": {}}
    for case in cases:
        argv = case["argv"]
        t1 = time.perf_counter()
        try:
            assert argv[:2] == ["vllm", "serve"], argv[:2]
            parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
            ns = parser.parse_args(["--model", argv[2], *argv[3:]])
            vc = EngineArgs.from_cli_args(ns).create_engine_config()
            res = {
                "ok": True,
                "max_num_seqs": vc.scheduler_config.max_num_seqs,
                "max_num_batched_tokens": vc.scheduler_config.max_num_batched_tokens,
            }
            sc = vc.speculative_config
            if sc is not None:
                res["method"] = sc.method
                res["model"] = sc.model
                res["num_speculative_tokens"] = sc.num_speculative_tokens
                res["speculative_token_tree"] = getattr(sc, "speculative_token_tree", None)
                sched = getattr(sc, "num_speculative_tokens_per_batch_size", None)
                if sched:
                    from vllm.v1.spec_decode.dynamic.utils import (
                        build_dynamic_sd_schedule_lookup,
                    )

                    dense = build_dynamic_sd_schedule_lookup(
                        sched,
                        vllm_max_batch_size=vc.scheduler_config.max_num_seqs,
                        vllm_num_speculative_tokens=sc.num_speculative_tokens,
                    )
                    res["k_by_batch"] = [int(k) for k in list(dense)]
        except SystemExit as e:
            res = {"ok": False, "error": f"argparse exit {e.code}"}
        except Exception as e:
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        res["parse_s"] = round(time.perf_counter() - t1, 3)
        out["results"][case["id"]] = res
    out["total_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
