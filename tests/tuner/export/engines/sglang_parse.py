"""Feed emitted SGLang launch commands to SGLang's own parser (run in a subprocess).

usage: python sglang_parse.py CASES.json -> one line ``RESULT {json}`` on stdout.
CASES.json: ``[{"id": str, "argv": ["python", "-m", "sglang.launch_server", *flags],
"cwd": folder the command runs in (its adaptive-config file is there)}]``. Each case runs
``prepare_server_args(flags + ["--device", "cpu"])`` (argparse: names, types, choices) and
``ServerArgs.resolve_once()`` — the resolution ``sglang serve`` runs before it starts a
worker, with the speculative-decoding rules (and their start-up crashes) — and reports
``resolved_dict()``. A fresh record per case: a failed resolution cannot be retried.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

KEYS = (
    "speculative_algorithm",
    "speculative_draft_model_path",
    "speculative_num_steps",
    "speculative_eagle_topk",
    "speculative_num_draft_tokens",
    "speculative_adaptive",
    "max_running_requests",
)


def main() -> None:
    t0 = time.perf_counter()
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    import sglang
    from sglang.srt.server_args import prepare_server_args

    logging.disable(logging.WARNING)
    out = {"version": sglang.__version__, "import_s": time.perf_counter() - t0, "results": {}}
    home = os.getcwd()
    for case in cases:
        argv = case["argv"]
        try:
            assert argv[:3] == ["python", "-m", "sglang.launch_server"], argv[:3]
            os.chdir(case.get("cwd") or home)
            sa = prepare_server_args([*argv[3:], "--device", "cpu"])
            sa.resolve_once()
            d = sa.resolved_dict()
            res = {"ok": True, **{k: d.get(k) for k in KEYS}}
        except SystemExit as e:
            res = {"ok": False, "error": f"argparse exit {e.code}"}
        except Exception as e:
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        finally:
            os.chdir(home)
        out["results"][case["id"]] = res
    out["total_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
