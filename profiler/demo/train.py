"""Train the byte-level demo pair (target + drafter) on the Python standard library sources.

The recipe is fixed in code (:mod:`.recipes`) so that
``spectune profile train-demo --out models/`` reproduces the shipped checkpoints. Training
uses random windows over the concatenated corpus (a fresh batch every step, drawn from a
generator seeded by (seed, step), so a resumed run sees the same batches), AdamW with linear
warm-up and cosine decay, and bf16 autocast (on this CPU, AVX-512 bf16 matmuls are ~4x
faster than fp32; the master weights and optimizer state stay fp32).

The drafter is distilled from the target: its loss is the KL divergence from the target's
next-byte distribution, which raises the share of positions where the two agree (the
drafter's acceptance) compared with training on the data alone.

Every few minutes the full training state (weights, optimizer, step) is written to the work
folder, so an interrupted run resumes where it stopped. Finished checkpoints are saved in
Hugging Face format, bf16, with ``"spectune_tokenizer": "bytes"`` in config.json; a
checkpoint whose recorded recipe matches is not trained again (cache).

Units: steps, tokens (bytes), seconds; losses in nats per byte (bits = nats / ln 2).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .corpus import (
    Corpus,
    load_corpus,
    random_windows,
)
from .evaluate import heldout_loss, logits_of, loop_metric
from .recipes import DRAFTER_RECIPE, TARGET_RECIPE, TrainRecipe


@dataclass
class TrainReport:
    """What a training run measured (stored in config.json under ``spectune_train``)."""

    recipe: dict[str, Any]
    recipe_digest: str
    heldout_loss_nats: float = float("nan")
    heldout_bits_per_byte: float = float("nan")
    distinct_8gram_fraction: float = float("nan")  # mean over greedy samples; 1.0 = no loops
    distinct_8gram_min: float = float("nan")
    distinct_8gram_code: float = float("nan")  # the same on def/class prompts
    distinct_8gram_code_min: float = float("nan")
    sample_code: str = ""
    train_seconds: float = 0.0
    tokens_seen: int = 0
    sample: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- model backend


def build_model(model_cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    """A fresh fp32 Llama-family model with a small (0.02) init, deterministic for ``seed``."""
    from spectune.profiler.runtime.config import ModelConfig
    from spectune.profiler.runtime.model import random_model

    return random_model(ModelConfig.from_hf_dict(model_cfg), seed=seed, initializer_range=0.02)


# --------------------------------------------------------------------------- training


def lr_at(step: int, recipe: TrainRecipe) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr``, in each cycle."""
    first, total, *_ = recipe.stage_at(step)
    step -= first
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    frac = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
    return recipe.lr * (recipe.min_lr_ratio + (1.0 - recipe.min_lr_ratio) * cos)


def _optimizer(model: torch.nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    # No weight decay on norms (1-D); embeddings and projections decay.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.95), eps=1e-8)


def _batch(corpus_part: np.ndarray, recipe: TrainRecipe, step: int) -> torch.Tensor:
    rng = np.random.default_rng(np.random.SeedSequence([recipe.seed, step]))
    _, _, batch, seq_len = recipe.stage_at(step)
    return torch.from_numpy(random_windows(corpus_part, batch, seq_len + 1, rng))


def _loss(
    model: torch.nn.Module, ids: torch.Tensor, teacher: torch.nn.Module | None
) -> torch.Tensor:
    x, y = ids[:, :-1], ids[:, 1:]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = logits_of(model, x).float()
    if teacher is None:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        t_logits = logits_of(teacher, x).float()
    t_logp = F.log_softmax(t_logits, dim=-1)
    s_logp = F.log_softmax(logits, dim=-1)
    # KL(teacher || student), mean over positions.
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()


def train_model(
    recipe: TrainRecipe,
    corpus: Corpus,
    work_dir: Path,
    teacher: torch.nn.Module | None = None,
    save_every_s: float = 180.0,
    log: Callable[[str], None] = print,
    evaluate: bool = True,
    stop_after: int | None = None,
) -> tuple[torch.nn.Module, TrainReport]:
    """Train one model from its recipe, resuming from the work folder's state if present.

    Args:
        recipe: what to train.
        corpus: the byte corpus.
        work_dir: folder for the resumable training state (``<name>-<digest>.pt``).
        teacher: the model to distill from when ``recipe.distill_from`` is set.
        save_every_s: wall seconds between state saves.
        log: where progress lines go.
        evaluate: measure held-out loss and the loop metric at the end.
        stop_after: save and stop after this many steps of this call (an interruption;
            tests use it to check that resuming gives the same model).

    Returns:
        The trained fp32 model and its report.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / f"{recipe.name}-{recipe.digest()}.pt"
    model = build_model(recipe.model, recipe.seed)
    opt = _optimizer(model, recipe)
    start, elapsed_s = 0, 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        start, elapsed_s = int(state["step"]), float(state["elapsed_s"])
        if start != recipe.stage_at(start)[0]:  # a new cycle starts with a fresh optimizer
            opt.load_state_dict(state["opt"])
        log(f"[{recipe.name}] resumed at step {start}/{recipe.total_steps}")

    def save(step: int) -> None:
        tmp = state_path.with_suffix(".pt.tmp")
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step}
        torch.save({**state, "elapsed_s": elapsed_s}, tmp)
        tmp.replace(state_path)

    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"[{recipe.name}] {n_params / 1e6:.2f}M params, cycles (steps, batch, bytes) "
        f"{[st[1:] for st in recipe.stages()]}, state {state_path}"
    )
    model.train()
    last_save = time.monotonic()
    t_prev, ema = time.monotonic(), None
    tokens_done = sum(min(n, max(0, start - first)) * b * t for first, n, b, t in recipe.stages())
    for step in range(start, recipe.total_steps):
        first, _, batch, seq_len = recipe.stage_at(step)
        if step == first and step > 0:
            opt = _optimizer(model, recipe)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, recipe)
        loss = _loss(model, _batch(corpus.train, recipe, step), teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        now = time.monotonic()
        elapsed_s += now - t_prev
        t_prev = now
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        done = step + 1
        tokens_done += batch * seq_len
        if done % 25 == 0 or done == recipe.total_steps:
            tok_s = tokens_done / max(elapsed_s, 1e-9)
            log(
                f"[{recipe.name}] step {done}/{recipe.total_steps} loss {ema:.4f} "
                f"lr {lr_at(step, recipe):.2e} {elapsed_s:.0f}s ({tok_s:.0f} tok/s avg)"
            )
        if done % 500 == 0 and done < recipe.total_steps and evaluate:
            mean_frac, min_frac, _ = loop_metric(model, corpus, new_tokens=128)
            code_frac, _, _ = loop_metric(model, corpus, new_tokens=128, code=True)
            log(
                f"[{recipe.name}] heldout loss {heldout_loss(model, corpus):.4f} nats/byte, "
                f"distinct 8-grams in 128 greedy bytes: line starts {mean_frac:.3f} "
                f"(min {min_frac:.3f}), def/class prompts {code_frac:.3f}"
            )
        interrupted = stop_after is not None and done - start >= stop_after
        if now - last_save > save_every_s or done == recipe.total_steps or interrupted:
            save(done)
            last_save = time.monotonic()
            t_prev = last_save  # saving time is not training time
        if interrupted:
            break

    report = TrainReport(recipe=dataclasses.asdict(recipe), recipe_digest=recipe.digest())
    report.train_seconds = round(elapsed_s, 1)
    report.tokens_seen = sum(n * b * t for _, n, b, t in recipe.stages())
    if not evaluate:
        return model, report
    report.heldout_loss_nats = round(heldout_loss(model, corpus), 4)
    report.heldout_bits_per_byte = round(report.heldout_loss_nats / math.log(2), 4)
    mean_frac, min_frac, sample = loop_metric(model, corpus)
    report.distinct_8gram_fraction = round(mean_frac, 4)
    report.distinct_8gram_min = round(min_frac, 4)
    code_frac, code_min, report.sample_code = loop_metric(model, corpus, code=True)
    report.distinct_8gram_code = round(code_frac, 4)
    report.distinct_8gram_code_min = round(code_min, 4)
    report.sample = sample
    log(
        f"[{recipe.name}] done: heldout {report.heldout_bits_per_byte} bits/byte, "
        f"distinct 8-grams: line starts {mean_frac:.3f} (min {min_frac:.3f}), def/class "
        f"prompts {code_frac:.3f} (min {code_min:.3f}), {elapsed_s:.0f}s"
    )
    return model, report


# --------------------------------------------------------------------------- the demo pair


def _cached(out_dir: Path, recipe: TrainRecipe) -> bool:
    cfg = out_dir / "config.json"
    if not cfg.is_file() or not list(out_dir.glob("*.safetensors")):
        return False
    try:
        meta = json.loads(cfg.read_text()).get("spectune_train", {})
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("recipe_digest") == recipe.digest()


def export(model: torch.nn.Module, report: TrainReport, out_dir: Path) -> None:
    """Save ``model`` in bf16 HF format with the byte tokenizer tag and the training report."""
    from spectune.profiler.runtime.checkpoint import save_checkpoint

    save_checkpoint(model.to(torch.bfloat16), out_dir)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["spectune_tokenizer"] = "bytes"
    cfg["spectune_train"] = dataclasses.asdict(report)
    tmp = cfg_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.replace(cfg_path)


def train_demo(
    out_root: str | Path,
    work_dir: str | Path = ".cache/train-demo",
    threads: int | None = None,
    log: Callable[[str], None] = print,
    recipes: tuple[TrainRecipe, TrainRecipe] = (TARGET_RECIPE, DRAFTER_RECIPE),
) -> dict[str, Path]:
    """Train (or reuse) the byte-level target and its distilled drafter.

    Args:
        out_root: folder that receives ``<name>/`` checkpoint directories.
        work_dir: folder for resumable training state (not committed).
        threads: torch intra-op threads (default: torch's choice).
        log: where progress lines go.
        recipes: (target, drafter) recipes; the drafter distils from the target.

    Returns:
        ``{name: checkpoint dir}`` for both models.
    """
    from spectune.profiler.runtime.checkpoint import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    out_root, work = Path(out_root), Path(work_dir)
    target_r, drafter_r = recipes
    dirs = {r.name: out_root / r.name for r in recipes}
    corpus = None
    if _cached(dirs[target_r.name], target_r):
        log(f"[{target_r.name}] cached at {dirs[target_r.name]}")
    else:
        corpus = load_corpus()
        model, report = train_model(target_r, corpus, work, log=log)
        export(model, report, dirs[target_r.name])
    if _cached(dirs[drafter_r.name], drafter_r):
        log(f"[{drafter_r.name}] cached at {dirs[drafter_r.name]}")
    else:
        corpus = corpus or load_corpus()
        teacher = load_checkpoint(dirs[target_r.name], dtype=torch.float32)
        model, report = train_model(drafter_r, corpus, work, teacher=teacher, log=log)
        export(model, report, dirs[drafter_r.name])
    return dirs


def main() -> None:
    """``python -m spectune.profiler.demo.train [OUT_ROOT [THREADS]]``: train the demo pair."""
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "models"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    train_demo(out, threads=threads, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
