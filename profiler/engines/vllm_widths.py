"""A vLLM draft proposer that proposes a set number of tokens: verify widths on demand.

The latency profiler needs the target's verify step at every width 1 + w (w = 0..k), for
every batch size, measured the way vLLM runs it (rejection sampler, speculative
bookkeeping, its own kernels). vLLM cannot be told to draft w tokens (an n-gram finds what
it finds; a draft model always drafts k; its synthetic rejection sampler asserts on CPU),
but it loads a proposer class by name (``speculative_config = {"method": "custom_class",
"model": "spectune.profiler.engines.vllm_widths.FixedWidthProposer",
"num_speculative_tokens": k}``). This one proposes exactly ``w`` tokens for every
request that sampled a token (the last sampled token, repeated: the target accepts them
when it would repeat itself, so contexts grow about as in plain decoding), with ``w``
read from the file named by :data:`ENV_WIDTH` (an integer 0..k; re-read when the file
changes, so one engine serves every width). Runs in vLLM's worker process.
"""

from __future__ import annotations

import os
from typing import Any

ENV_WIDTH = "SPECTUNE_VLLM_WIDTH_FILE"
QUALNAME = "spectune.profiler.engines.vllm_widths.FixedWidthProposer"


class FixedWidthProposer:
    """Proposes ``w`` tokens per request (module docstring); built by vLLM in its worker.

    Args:
        vllm_config: vLLM's config (``speculative_config.num_speculative_tokens`` = k, the
            most it may propose).
    """

    def __init__(self, vllm_config: Any):
        self.k = int(vllm_config.speculative_config.num_speculative_tokens)
        self.path = os.environ.get(ENV_WIDTH)
        self._stamp: float | None = None
        self.width = self.k

    def load_model(self, *args: Any, **kwargs: Any) -> None:
        """vLLM's CPU runner calls ``load_model`` on every drafter; there is no model."""

    def _read_width(self) -> int:
        if not self.path:
            return self.width
        try:
            stamp = os.stat(self.path).st_mtime_ns
            if stamp != self._stamp:
                with open(self.path) as fh:
                    self.width = max(0, min(self.k, int(fh.read().strip() or self.k)))
                self._stamp = stamp
        except (OSError, ValueError):
            pass  # keep the last width: the profiler writes the file before each run
        return self.width

    def propose(
        self,
        sampled_token_ids: list[list[int]],
        num_tokens_no_spec: Any,
        token_ids_cpu: Any,
        slot_mappings: Any = None,
    ) -> list[list[int]]:
        """``w`` copies of each request's last sampled token ([] where none was sampled)."""
        w = self._read_width()
        return [[int(toks[-1])] * w if toks else [] for toks in sampled_token_ids]
