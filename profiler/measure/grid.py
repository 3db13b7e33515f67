"""What the latency profiler measures and how: the grid of points and the settings.

A point is (batch, query_tokens, context_tokens). The quick grid takes a few minutes on a
CPU; the full grid is dense where verify steps live (query <= 17) and reaches prompt-sized
prefills. Settings say how (repeats, warm-up, clock, dtype), never what.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spectune.simulator.errors import InputError

Point = tuple[int, int, int]  # (batch, query_tokens, context_tokens)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Grid:
    """The measured axes; every combination is a point (minus those over the limits)."""

    batches: tuple[int, ...]
    queries: tuple[int, ...]
    contexts: tuple[int, ...]
    max_tokens: int | None = None  # drop points with batch * query_tokens above this

    def points(self, max_position: int) -> list[Point]:
        """The grid's points that fit ``max_position`` (context + query) and ``max_tokens``."""
        out = []
        for b in self.batches:
            for q in self.queries:
                if self.max_tokens is not None and b * q > self.max_tokens:
                    continue
                for c in self.contexts:
                    if c + q <= max_position:
                        out.append((b, q, c))
        return out


# Decode (q=1), chain/tree verify (q = k+1 or nodes+1 up to 64) and small prefill chunks.
# The full grid is dense where verify steps live (q <= 17) and reaches prompt-sized prefills.
QUICK_GRID = Grid(
    batches=(1, 2, 4, 8, 16),
    queries=(1, 2, 4, 8, 16, 32, 64, 128, 320),
    contexts=(0, 128, 384, 768),
    max_tokens=1024,
)
FULL_GRID = Grid(
    batches=(1, 2, 3, 4, 6, 8, 12, 16),
    queries=(1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 17, 24, 32, 64, 128, 256, 384),
    contexts=(0, 128, 256, 384, 512, 768, 1024),
    max_tokens=2048,
)


@dataclass(frozen=True)
class ProfileSettings:
    """How to measure (not what): repeats, warm-up, dtype, device, seed."""

    dtype: str = "bf16"
    repeats: int = 5
    warmup: int = 1
    inner: int = 5  # timed forwards per visit; the visit's sample is the fastest
    stall_ratio: float = 1.5  # visits slower than this x the point's fastest are stalls
    clock: str = "wall"  # "wall" (Timer) or "cpu" (this thread's CPU time; 1 CPU thread)
    max_repeats: int = 0  # extra passes over unsettled points up to this many in all
    target_rse: float = 0.015  # a point is settled when its median's relative std error <=
    device: str = "cpu"
    seed: int = 0

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(
                f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}", field="--dtype"
            )
        if self.repeats < 1:
            raise InputError(f"must be >= 1, got {self.repeats}", field="--repeats")
        if self.warmup < 0:
            raise InputError(f"must be >= 0, got {self.warmup}", field="--warmup")
        if self.max_repeats < 0 or not self.target_rse > 0:
            raise InputError(
                f"need max-repeats >= 0 and target-rse > 0, got {self.max_repeats}, "
                f"{self.target_rse}",
                field="--max-repeats",
            )
        if self.inner < 1:
            raise InputError(f"must be >= 1, got {self.inner}", field="--inner")
        if self.clock not in ("wall", "cpu"):
            raise InputError(f"must be wall or cpu, got {self.clock!r}", field="--clock")
        if self.clock == "cpu" and (self.device != "cpu" or torch.get_num_threads() != 1):
            raise InputError(
                "the cpu clock times one CPU thread: use --device cpu --threads 1, got "
                f"device {self.device} with {torch.get_num_threads()} threads",
                field="--clock",
            )


def parse_int_list(text: str, flag: str, minimum: int = 1) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), sorted and unique.

    Raises:
        InputError: a non-integer or a value below ``minimum``.
    """
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise InputError(f"expected comma-separated integers, got {text!r}", field=flag) from None
    if not vals or vals[0] < minimum:
        raise InputError(f"values must be >= {minimum}, got {text!r}", field=flag)
    return tuple(vals)
