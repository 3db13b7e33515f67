"""Breaking greedy repetition loops with DITTO training (Xu et al., NeurIPS 2022,
"Learning to Break the Loop: Analyzing and Mitigating Repetitions for Neural Text
Generation").

Small LMs decoded greedily fall into loops because repeating raises the probability of
repeating again (self-reinforcement): once a line has been emitted twice, the model
becomes ever surer it comes next. DITTO builds *pseudo-repetitive* samples — one line of
real text repeated until the window is full — and, for every token of the n-th copy
(n >= 2), penalises its probability drifting above ``lam`` times its probability in the
previous copy:

    loss = -log(1 - |p_n(x_t) - lam * stopgrad(p_{n-1}(x_t))|)

so that repeating stays possible but stops reinforcing itself. It is mixed with the usual
next-byte loss on ordinary windows (see :mod:`.train`). Units: bytes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MIN_LINE_BYTES = 12
MAX_LINE_BYTES = 120


def repeated_line_batch(
    data: np.ndarray, batch: int, length: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows of ``length`` bytes, each one corpus line repeated.

    Returns:
        (ids [batch, length] int64, line_bytes [batch] int64): the period of each row.
    """
    rows, periods = [], []
    while len(rows) < batch:
        start = int(rng.integers(0, len(data) - 4 * MAX_LINE_BYTES))
        chunk = data[start : start + 4 * MAX_LINE_BYTES].tobytes()
        lines = [ln + b"\n" for ln in chunk.split(b"\n")[1:-1]]  # whole lines only
        lines = [ln for ln in lines if MIN_LINE_BYTES <= len(ln) <= MAX_LINE_BYTES and ln.strip()]
        if not lines:
            continue
        line = lines[int(rng.integers(0, len(lines)))]
        reps = -(-length // len(line))
        rows.append(list((line * reps)[:length]))
        periods.append(len(line))
    return torch.tensor(rows, dtype=torch.long), torch.tensor(periods, dtype=torch.long)


def ditto_loss(
    logits: torch.Tensor, ids: torch.Tensor, periods: torch.Tensor, lam: float = 0.5
) -> torch.Tensor:
    """The DITTO loss of next-byte ``logits`` [B, T, V] for inputs ``ids`` [B, T + 1].

    Target byte j (= ids[:, j], predicted by logits[:, j - 1]) in copy n >= 2 is compared
    with the same byte one period earlier, j - period.
    """
    targets = ids[:, 1:]  # [B, T]
    prob = F.softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]  # [B, T]
    t = torch.arange(targets.shape[1], device=ids.device)[None, :]  # target j = t + 1
    prev = t - periods[:, None]  # [B, T]; the same byte in the previous copy
    valid = prev >= 0
    prev_prob = prob.detach().gather(1, prev.clamp(min=0))
    gap = (prob - lam * prev_prob).abs().clamp(max=1.0 - 1e-5)
    loss = -torch.log1p(-gap)
    return (loss * valid).sum() / valid.sum().clamp(min=1)
