"""A preallocated KV cache with per-sequence lengths, commit and copy-free rollback.

Call order for one decoding step (see ``DecoderLM.forward``):

1. ``model(input_ids [B, q], cache)`` writes the K/V of the q new tokens of sequence b at
   slots ``lengths[b] .. lengths[b] + q - 1`` but does not advance ``lengths``.
2. ``cache.commit(num_tokens=n)`` keeps the first ``n[b]`` of them (chain drafting, prefill
   of right-padded prompts), or ``cache.commit(accepted_slots=...)`` keeps the accepted nodes
   of a token tree, moving them to contiguous slots (tree verification).
3. ``cache.truncate(lengths)`` rolls sequences back (e.g. after drafting with the cache of
   the target itself): only ``lengths`` changes; stale slots are overwritten later.

Sequences in one batch advance by different amounts; slots past ``lengths[b]`` are never
attended to. ``commit`` and ``truncate`` update ``lengths`` in place, so views made by
``rows`` stay consistent with their parent. Units: lengths and slots are token counts / indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from spectune.simulator.errors import InputError

if TYPE_CHECKING:
    from .config import ModelConfig


class CacheError(InputError):
    """A cache operation that the cache's state does not allow (full, bad commit)."""


class KVCache:
    """Static K/V tensors ``[layers, batch, kv_heads, max_len, head_dim]`` plus lengths.

    Args:
        config: the model the cache serves (layers, kv heads, head size).
        batch: number of sequences.
        max_len: slots per sequence (prompt + generated + one step's new tokens).
        device: where the tensors live.
        dtype: K/V dtype; must equal the model's weight dtype. Defaults to the config's
            ``torch_dtype`` (random_model and load_checkpoint set it to the dtype used).
        num_layers: layers to allocate, if fewer than the model's (an early-exit drafter).
    """

    def __init__(
        self,
        config: ModelConfig,
        batch: int,
        max_len: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        num_layers: int | None = None,
    ):
        if batch <= 0 or max_len <= 0:
            raise CacheError(f"batch and max_len must be > 0, got {batch} and {max_len}")
        dtype = dtype or getattr(torch, config.torch_dtype)
        layers = num_layers or config.num_hidden_layers
        shape = (layers, batch, config.num_key_value_heads, max_len, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.pending_tokens = 0  # q of the last forward that wrote new slots

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def num_layers(self) -> int:
        return self.k.shape[0]

    def rows(self, start: int, stop: int) -> KVCache:
        """A cache over sequences ``start..stop-1`` that shares this cache's memory.

        Forwards, commits and truncations through the view act on this cache's tensors
        and ``lengths`` (both update in place), e.g. to prefill a group of new requests
        or to run a step over only the leading ``n`` sequences of a batch.
        """
        if not 0 <= start < stop <= self.batch:
            raise CacheError(
                f"rows must satisfy 0 <= start < stop <= {self.batch}, got {start}, {stop}"
            )
        view = object.__new__(KVCache)
        view.k, view.v = self.k[:, start:stop], self.v[:, start:stop]
        view.lengths = self.lengths[start:stop]
        view.pending_tokens = 0
        return view

    def reset(self) -> None:
        """Forget every sequence (lengths to 0); no memory is freed or cleared."""
        self.lengths.zero_()
        self.pending_tokens = 0

    def commit(
        self,
        accepted_slots: Sequence[Sequence[int]] | None = None,
        num_tokens: torch.Tensor | Sequence[int] | int | None = None,
    ) -> None:
        """Keep some of the tokens the last forward wrote, and advance ``lengths``.

        Give exactly one of the two forms.

        Args:
            accepted_slots: tree form; ``accepted_slots[b]`` lists the offsets (0..q-1, in
                path order, strictly increasing) of sequence b's accepted tokens. Their K/V
                move to slots ``lengths[b] + 0, 1, ...`` (at most depth copies per sequence,
                done in one indexed copy for the whole batch).
            num_tokens: chain form; keep the first ``num_tokens[b]`` new tokens (an int
                applies to every sequence). 0 keeps none.
        Raises:
            CacheError: both or neither form, wrong batch size, an offset or count outside
                what the last forward wrote.
        """
        if (accepted_slots is None) == (num_tokens is None):
            raise CacheError("commit takes exactly one of accepted_slots or num_tokens")
        q = self.pending_tokens
        if num_tokens is not None:
            n = torch.as_tensor(num_tokens, dtype=torch.long, device=self.lengths.device)
            n = n.expand(self.batch) if n.dim() == 0 else n
            if n.shape != (self.batch,):
                raise CacheError(f"num_tokens must have {self.batch} entries, got {tuple(n.shape)}")
            if bool(((n < 0) | (n > q)).any()):
                raise CacheError(f"num_tokens must be in [0, {q}], got {n.tolist()}")
            self.lengths += n
            return
        assert accepted_slots is not None
        if len(accepted_slots) != self.batch:
            raise CacheError(
                f"accepted_slots must have {self.batch} lists, got {len(accepted_slots)}"
            )
        lengths = self.lengths.tolist()
        rows, src, dst, kept = [], [], [], []
        for b, offsets in enumerate(accepted_slots):
            prev = -1
            for i, off in enumerate(offsets):
                if not prev < off < q:
                    raise CacheError(
                        f"accepted_slots[{b}] must be increasing offsets in "
                        f"[0, {q}), got {list(offsets)}"
                    )
                prev = off
                if off != i:
                    rows.append(b)
                    src.append(lengths[b] + off)
                    dst.append(lengths[b] + i)
            kept.append(len(offsets))
        if rows:
            dev = self.k.device
            r, s, d = (torch.tensor(x, device=dev) for x in (rows, src, dst))
            # Advanced indices around a slice: the gathered copy is made before the write,
            # so overlapping source and destination slots are safe.
            self.k[:, r, :, d] = self.k[:, r, :, s]
            self.v[:, r, :, d] = self.v[:, r, :, s]
        self.lengths += torch.tensor(kept, dtype=torch.long, device=self.lengths.device)

    def truncate(self, lengths: torch.Tensor | Sequence[int]) -> None:
        """Roll sequences back (or forward over already written slots): set ``lengths``.

        Args:
            lengths: new committed lengths [batch]; no K/V is copied or cleared.
        Raises:
            CacheError: wrong batch size or a length outside [0, max_len].
        """
        n = torch.as_tensor(lengths, dtype=torch.long, device=self.lengths.device)
        if n.shape != (self.batch,):
            raise CacheError(f"lengths must have {self.batch} entries, got {tuple(n.shape)}")
        if bool(((n < 0) | (n > self.max_len)).any()):
            raise CacheError(f"lengths must be in [0, {self.max_len}], got {n.tolist()}")
        self.lengths.copy_(n)
