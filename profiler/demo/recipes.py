"""The demo pair's recipes: everything that determines a trained checkpoint.

:data:`TARGET_RECIPE` (a 6-layer byte-level Llama trained in stages of growing window) and
:data:`DRAFTER_RECIPE` (a 2-layer model distilled from that target); a recipe's digest keys
the training cache, so changing any field retrains. No torch here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .corpus import BYTE_VOCAB

TARGET_NAME = "stdlib-byte-target"
DRAFTER_NAME = "stdlib-byte-drafter"


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that determines a trained checkpoint (its hash keys the cache)."""

    name: str
    model: dict[str, Any]  # Hugging Face Llama config fields
    steps: int
    batch: int
    seq_len: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    distill_from: str | None = None  # "<teacher name>@<recipe digest>"; loss = KL(teacher||student)
    # Further cycles (steps, batch, seq_len), each from the previous cycle's weights with a
    # fresh AdamW, its own warm-up and cosine decay.
    more_stages: tuple[tuple[int, int, int], ...] = ()

    def stages(self) -> list[tuple[int, int, int, int]]:
        """(first step, steps, batch, seq_len) of every cycle."""
        out, start = [], 0
        for steps, batch, seq_len in [(self.steps, self.batch, self.seq_len), *self.more_stages]:
            out.append((start, steps, batch, seq_len))
            start += steps
        return out

    @property
    def total_steps(self) -> int:
        return self.steps + sum(st[0] for st in self.more_stages)

    def stage_at(self, step: int) -> tuple[int, int, int, int]:
        return [st for st in self.stages() if st[0] <= step][-1]

    def digest(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _llama(
    hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int
) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": BYTE_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "attention_bias": False,
    }


# ~4.9M parameters (9.7 MB in bf16). Two cosine cycles: 1000 steps of 256-byte windows,
# then 2000 steps of 768-byte windows (~2.3 epochs of the 11 MB corpus in all). The second
# cycle teaches positions past 256: prompts (~300 bytes) plus generated text reach ~600,
# and a model that saw only 256-byte windows produces garbage beyond that.
TARGET_RECIPE = TrainRecipe(
    name=TARGET_NAME,
    model=_llama(hidden=256, layers=6, heads=4, kv_heads=2, intermediate=768),
    steps=1000,
    more_stages=((2000, 12, 768),),
    batch=32,
    seq_len=256,
    lr=2e-3,
    warmup_steps=100,
    seed=1,
)
# ~0.9M parameters: one drafter pass costs a fraction of a target pass. Distilled from the
# target on 768-byte windows (the positions the demo prompts and outputs reach).
DRAFTER_RECIPE = TrainRecipe(
    name=DRAFTER_NAME,
    model=_llama(hidden=192, layers=2, heads=3, kv_heads=1, intermediate=512),
    steps=600,
    batch=12,
    seq_len=768,
    lr=3e-3,
    warmup_steps=50,
    seed=2,
    distill_from=f"{TARGET_NAME}@{TARGET_RECIPE.digest()}",
)
