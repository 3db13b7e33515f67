"""Evaluation of the demo models: held-out loss and the greedy-loop metric.

The loop metric decodes greedily from held-out prompts and reports the fraction of
distinct 8-grams in the continuation (1.0 = no repeats; real stdlib code scores ~0.85-0.9
over 256 bytes; a model stuck in "the the the" scores near 0). Losses are nats per byte.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .corpus import Corpus, distinct_ngram_fraction, heldout_snippets, random_windows


def logits_of(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, T, vocab] of a plain causal forward (no KV cache)."""
    return model(ids)


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, corpus: Corpus, seq_len: int = 256, n: int = 32) -> float:
    """Mean next-byte cross-entropy (nats) on ``n`` fixed held-out windows."""
    rng = np.random.default_rng(np.random.SeedSequence(12345))
    ids = torch.from_numpy(random_windows(corpus.heldout, n, seq_len + 1, rng))
    model.eval()
    losses = []
    for chunk in ids.split(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = logits_of(model, chunk[:, :-1]).float()
        losses.append(
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        )
    model.train()
    return float(torch.stack(losses).mean())


def heldout_prompts(corpus: Corpus, n: int = 8, prompt_bytes: int = 96) -> list[bytes]:
    """``n`` deterministic held-out snippets that start at a line start."""
    rng = np.random.default_rng(np.random.SeedSequence(777))
    data = corpus.heldout.tobytes()
    out = []
    while len(out) < n:
        pos = int(rng.integers(0, len(data) - 4 * prompt_bytes))
        start = data.find(b"\n", pos) + 1
        snippet = data[start : start + prompt_bytes]
        if snippet.strip() and b"\n\n\n" not in snippet:
            out.append(snippet)
    return out


@torch.no_grad()
def greedy_bytes(model: torch.nn.Module, prompt: bytes, new_tokens: int) -> list[int]:
    """Greedy continuation of ``prompt`` (KV-cached decoding)."""
    from spectune.profiler.runtime.kvcache import KVCache

    cache = KVCache(model.config, 1, len(prompt) + new_tokens, dtype=torch.float32)
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    out: list[int] = []
    for _ in range(new_tokens):
        logits = model(ids, cache, last_only=True)[0, -1]
        cache.commit(num_tokens=ids.shape[1])
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids = torch.tensor([[nxt]])
    return out


def loop_metric(
    model: torch.nn.Module, corpus: Corpus, new_tokens: int = 256, code: bool = False
) -> tuple[float, float, str]:
    """Mean and min distinct-8-gram fraction of greedy continuations, and one sample.

    Prompts: 8 held-out snippets starting at random line starts (comments, docstrings,
    code alike), or with ``code`` 8 held-out ``def``/``class`` snippets of ~300 bytes
    like examples/prompts/stdlib.txt.
    """
    model.eval()
    fracs, sample = [], ""
    prompts = (
        [s.encode() for s in heldout_snippets(corpus, n=8, seed=1)]
        if code
        else heldout_prompts(corpus)
    )
    for i, prompt in enumerate(prompts):
        toks = greedy_bytes(model, prompt, new_tokens)
        fracs.append(distinct_ngram_fraction(toks, 8))
        if i == 0:
            sample = (prompt + bytes(toks)).decode("utf-8", errors="replace")
    model.train()
    return float(np.mean(fracs)), float(np.min(fracs)), sample
