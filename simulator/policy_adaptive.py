"""The speculation policies that learn from what they observe: SGLang's EMA tiers and the
goodput rule (:mod:`.policy` has the contract; docs/policies.md the engines' sources).
Each steps its own state over a run's observations in :meth:`horizon` exactly as
:meth:`observe` will, so a change of k ends the run at the right iteration."""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Callable
from typing import Any

from .policy import Policy, Seen


class EmaSlot:
    """One batch-size slot of SGLang's adaptive speculation (``AdaptiveStepSlot``)."""

    def __init__(self, initial: int, cfg: dict[str, Any]):
        self.cands = sorted(set(int(c) for c in cfg["candidate_steps"]))
        self.alpha = float(cfg.get("ema_alpha", 0.2))
        self.interval = int(cfg.get("update_interval", 5))
        self.warmup = int(cfg.get("warmup_batches", 10))
        self.down = float(cfg.get("down_hysteresis", -0.25))
        self.up = float(cfg.get("up_hysteresis", 0.0))
        self.ceiling = float(cfg.get("ceiling_coeff", 0))
        self.steps = initial if initial in self.cands else self.cands[len(self.cands) // 2]
        self.ema = float(self.steps - 1)
        self.count = 0

    def update(self, mean_accepted: float) -> None:
        """One verify's batch-mean accepted drafts (SGLang's ``update``)."""
        self.run([mean_accepted], stop_on_change=False)

    def run(self, means: list[float], stop_on_change: bool) -> int | None:
        """:meth:`update` over several iterations, the EMA stepped in a local loop between
        decisions (the same arithmetic). Returns the index of the first iteration after
        which the steps changed (and stops there when ``stop_on_change``), or None."""
        a, b = 1.0 - self.alpha, self.alpha
        ema, count, changed = self.ema, self.count, None
        for i, m in enumerate(means):
            if self.steps > 0:
                ema = a * ema + b * m
            count += 1
            if count <= self.warmup or (count - self.warmup) % self.interval:
                continue
            self.ema, old = ema, self.steps
            self._decide()
            ema = self.ema
            if self.steps != old and changed is None:
                changed = i
                if stop_on_change:
                    break
        self.ema, self.count = ema, count
        return changed

    def _decide(self) -> None:
        """SGLang's ``_recompute_params`` on the current EMA."""
        c = self.cands
        old = self.steps
        i = i0 = c.index(old)
        if old == 0:
            i = min(i + 1, len(c) - 1)
            if c[i] > 0 and self.ema < 0:
                self.ema = float(c[i] - 1)
            self.steps = c[i]
            return
        while i > 0:
            prev = c[i - 1]
            if self.ema <= (0.5 if prev == 0 else prev - 0.5) + self.down:
                i -= 1
            else:
                break
        if i == i0:
            while i < len(c) - 1 and self.ema > c[i] - 0.5 + self.up:
                i += 1
        if self.ceiling > 0 and c[i] <= old:
            cap = max(1, math.ceil(self.ema * self.ceiling))
            while i > 0 and c[i] > cap:
                i -= 1
        self.steps = c[i]


class EmaTiers(Policy):
    """SGLang's ``--speculative-adaptive`` (EMA strategy; sgl-project/sglang
    ``python/sglang/srt/speculative/adaptive_spec_params.py``, ``AdaptiveStepSlot`` and
    ``AdaptiveSpeculativeParams``, read at commit 015c8726): one slot per batch-size key
    (the largest key at or below the decode batch; below the smallest key, the smallest),
    each with its own candidate steps, EMA of the batch-mean accepted drafts (updated only
    while it speculates), iteration count, warm-up and update interval. After warm-up,
    every ``update_interval`` iterations the slot steps down through the candidates while
    the EMA <= (candidate - 0.5, or 0.5 for a 0 candidate) + ``down_hysteresis``, else up
    while EMA > current - 0.5 + ``up_hysteresis``; from 0 it probes the next candidate up.
    Initial step: ``num_spec_tokens`` if a candidate, else the middle candidate; the EMA
    starts at that step - 1. Not modelled: padding the batch size up to a CUDA-graph size
    before the slot lookup.
    """

    observes = True
    counts = "decoding"

    def __init__(self, initial: int, slots: dict[int, dict[str, Any]]):
        self.slots = {int(b): EmaSlot(initial, cfg) for b, cfg in sorted(slots.items())}
        self.keys = sorted(self.slots)
        super().__init__(max(max(s.cands) for s in self.slots.values()))

    def _slot(self, batch: int) -> EmaSlot:
        i = bisect.bisect_right(self.keys, batch) - 1
        return self.slots[self.keys[max(i, 0)]]

    def decide(self, batch: int) -> int:
        return self._slot(batch).steps

    def observe(self, batch: int, k: int, seen: Seen) -> None:
        if batch <= 0:
            return
        self._slot(batch).run([a / batch for a in seen.accepted], stop_on_change=False)

    def horizon(self, batch: int, k: int, seen: Seen) -> int:
        # The generic rule, stepping a copy of the one slot this batch size uses.
        n = len(seen.accepted)
        slot = self._slot(batch)
        if slot.steps != k:
            return 1
        trial = copy.copy(slot)
        hit = trial.run([a / batch for a in seen.accepted[: n - 1]], stop_on_change=True)
        return n if hit is None else hit + 1


class Goodput(Policy):
    """The k in 0..kmax with the most expected tokens per millisecond at this batch size:
    argmax_k E[tokens](k; α̂) / step_ms(B, k), ties to the smaller k (TurboSpec's goodput
    rule, arXiv 2406.14066). vLLM 0.32's adaptive verification
    (``enable_adaptive_verification``, ``vllm/v1/worker/gpu/spec_decode/
    adaptive_verification.py``) sizes the verify budget from profiled step costs and
    per-request draft confidences, for ``method: dspark`` only; this policy is the same
    goodput rule with a running acceptance estimate in place of confidences, which other
    drafters do not expose.

    α̂ is the maximum-likelihood per-draft acceptance of the geometric model over what the
    policy observed, decayed per iteration by 1 - 1/``window`` (a sequence that accepts L of
    its d drafts saw L acceptances, and one rejection when L < d; a step that drafted
    nothing, an n-gram miss, saw neither).
    Before any observation it speculates kmax. At k = 0 nothing is observed (the estimate
    stands still), so after ``window`` iterations without speculation it probes at kmax for
    one iteration and decides again from what that showed.

    Args:
        step_ms: (batch, k) -> milliseconds of one decode iteration (the cost table an
            engine profiles; :func:`reference_step_ms`).
    """

    observes = True

    def __init__(self, kmax: int, step_ms: Callable[[int, int], float], window: float = 64.0):
        super().__init__(kmax)
        self.step_ms = step_ms
        self.decay = 1.0 - 1.0 / float(window)
        self.num = 0.0  # decayed accepted drafts
        self.den = 0.0  # decayed accepted drafts + rejections
        self.off_run = 0  # iterations since it last speculated
        self.probe_after = max(1, math.ceil(window))
        self._rules: dict[int, tuple[list[float], list[int]]] = {}

    def _rule(self, batch: int) -> tuple[list[float], list[int]]:
        """The choice as a function of α̂ at this batch size: breakpoints t_1 < t_2 < ...
        and the k chosen on each interval (α̂ < t_1: ks[0]; t_i <= α̂ < t_(i+1): ks[i]).

        E[tokens](k+1) / E[tokens](k) grows with α, so the best k never falls as α̂ rises:
        the choice is a step function, found once per batch size by bisection (to 1e-12)
        between the estimates where it differs. :meth:`decide` and :meth:`horizon` both
        read it, so a run's horizon is exactly what per-iteration decisions would do.
        """
        rule = self._rules.get(batch)
        if rule is not None:
            return rule
        b = max(batch, 1)
        cost = [self.step_ms(b, k) for k in range(self.kmax + 1)]

        def best(alpha: float) -> int:
            rates = []
            for k in range(self.kmax + 1):
                tokens = k + 1.0 if alpha >= 1.0 else (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
                rates.append(tokens / cost[k])
            top = max(rates)
            return next(k for k, r in enumerate(rates) if r >= top * (1.0 - 1e-12))

        cuts: list[float] = []
        ks = [best(0.0)]

        def split(lo: float, hi: float, k_lo: int, k_hi: int) -> None:
            if k_lo == k_hi:
                return
            if hi - lo <= 1e-12:
                cuts.append(hi)
                ks.append(k_hi)
                return
            mid = 0.5 * (lo + hi)
            k_mid = best(mid)
            split(lo, mid, k_lo, k_mid)
            split(mid, hi, k_mid, k_hi)

        split(0.0, 1.0, ks[0], best(1.0))
        rule = self._rules[batch] = (cuts, ks)
        return rule

    def _choice(self, batch: int, num: float, den: float) -> int:
        if den <= 0.0:  # nothing observed yet: speculate the window
            return self.kmax
        cuts, ks = self._rule(batch)
        return ks[bisect.bisect_right(cuts, num / den)]

    def decide(self, batch: int) -> int:
        if self.off_run >= self.probe_after:  # long without speculation: probe once
            return self.kmax
        return self._choice(batch, self.num, self.den)

    def observe(self, batch: int, k: int, seen: Seen) -> None:
        if k == 0:
            self.off_run += len(seen.accepted)
            return
        self.off_run = 0
        num, den, g = self.num, self.den, self.decay
        for a, r in zip(seen.accepted, seen.rejected, strict=True):
            num = g * num + a
            den = g * den + a + r
        self.num, self.den = num, den

    def horizon(self, batch: int, k: int, seen: Seen) -> int:
        # The generic rule, with the estimate stepped in floats: the first iteration after
        # which the choice differs.
        n = len(seen.accepted)
        if self.decide(batch) != k:
            return 1
        if k == 0:  # nothing to learn: the next change is the probe
            return max(1, min(n, self.probe_after - self.off_run))
        # k's interval of estimates: bisect_right(cuts, α) == i  <=>  cuts[i-1] <= α < cuts[i]
        cuts, ks = self._rule(batch)
        i = bisect.bisect_right(cuts, self.num / self.den) if self.den > 0.0 else -1
        if i >= 0 and ks[i] != k:  # k was not the rule's choice (a probe): check each step
            i = -1
        lo = cuts[i - 1] if i > 0 else -math.inf
        hi = cuts[i] if 0 <= i < len(cuts) else math.inf
        num, den, g = self.num, self.den, self.decay
        acc, rej = seen.accepted[: n - 1], seen.rejected[: n - 1]
        for j, (a, r) in enumerate(zip(acc, rej, strict=True)):
            num = g * num + a
            den = g * den + a + r
            if den <= 0.0:
                if self.kmax != k:
                    return j + 1
                continue
            alpha = num / den
            if i < 0 or alpha < lo or alpha >= hi:  # (i < 0: k is not the estimate's choice)
                if self._choice(batch, num, den) != k:
                    return j + 1
                i = bisect.bisect_right(cuts, alpha)
                if ks[i] != k:
                    i = -1
                    continue
                lo = cuts[i - 1] if i > 0 else -math.inf
                hi = cuts[i] if i < len(cuts) else math.inf
        return n
