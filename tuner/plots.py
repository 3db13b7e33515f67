"""PNG figures for ``recommend --plot`` and ``plan --plot`` (matplotlib, Agg backend).

matplotlib is imported inside the functions, so the CLI only pays for it when a plot is
asked for.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from spectune.simulator.errors import InputError

from .objective import Evaluation


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"folder {p.parent} does not exist", source="--plot")
    try:
        fig.savefig(p, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write {p}: {e}", source="--plot") from None


def plot_recommend(
    evals: list[Evaluation], objective: str, front: list[Evaluation], path: str | Path
) -> None:
    """Left: the objective vs k per drafter (chains; plain decoding as a line).
    Right: every evaluated config in (throughput, p99 TPOT) with the Pareto front."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    by_drafter: dict[str, list[tuple[int, float]]] = defaultdict(list)
    plain = None
    for e in evals:
        c = e.config
        if not c.speculates:
            plain = e.value(objective) if plain is None else plain
        elif not c.is_tree and c.max_num_seqs in (None, _common_mns(evals)):
            by_drafter[c.drafter].append((c.num_spec_tokens, e.value(objective)))
    for name, pts in sorted(by_drafter.items()):
        pts.sort()
        ax1.plot([k for k, _ in pts], [v for _, v in pts], marker="o", label=name)
    if plain is not None:
        ax1.axhline(plain, color="grey", linestyle="--", label="plain decoding")
    unit = {
        "throughput": "output tok/s",
        "goodput": "req/s meeting SLOs",
        "latency": "p99 TPOT (s)",
    }[objective]
    ax1.set_xlabel("draft length k (chain)")
    ax1.set_ylabel(f"{objective} ({unit})")
    ax1.set_title(f"{objective} vs k per drafter (evaluated chains)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)

    thr = [e.value("throughput") for e in evals]
    lat = [e.value("latency") * 1000 for e in evals]
    ok = [e.feasible for e in evals]
    ax2.scatter(
        [t for t, f in zip(thr, ok, strict=True) if f],
        [v for v, f in zip(lat, ok, strict=True) if f],
        s=14,
        c="tab:blue",
        label="meets SLOs",
    )
    ax2.scatter(
        [t for t, f in zip(thr, ok, strict=True) if not f],
        [v for v, f in zip(lat, ok, strict=True) if not f],
        s=14,
        c="tab:red",
        marker="x",
        label="misses SLOs",
    )
    if front:
        pts = sorted((e.value("throughput"), e.value("latency") * 1000) for e in front)
        ax2.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            color="black",
            marker="o",
            fillstyle="none",
            label="Pareto front",
        )
    ax2.set_xlabel("throughput (output tok/s)")
    ax2.set_ylabel("p99 TPOT (ms)")
    ax2.set_title("configs evaluated: throughput vs p99 TPOT")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def _common_mns(evals: list[Evaluation]) -> int | None:
    """The max_num_seqs most chains were evaluated at (one curve per drafter)."""
    counts: dict[int | None, int] = defaultdict(int)
    for e in evals:
        if e.config.speculates and not e.config.is_tree:
            counts[e.config.max_num_seqs] += 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def plot_plan(rows: list[dict[str, Any]], slo_tpot_s: float | None, path: str | Path) -> None:
    """Goodput and p99 TPOT vs arrival rate, plain decoding vs the best SD config."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = sorted(rows, key=lambda r: r["rate_per_s"])
    x = [r["rate_per_s"] for r in rows]
    for key, label, style in (("plain", "plain decoding", "--"), ("sd", "best SD config", "-")):
        ax1.plot(x, [r[key]["goodput_req_per_s"] for r in rows], style, marker="o", label=label)
        ax2.plot(x, [r[key]["tpot_p99_s"] * 1000 for r in rows], style, marker="o", label=label)
    ax1.plot(x, x, color="grey", linewidth=0.8, label="offered load")
    ax1.set_xlabel("arrival rate (req/s, Poisson)")
    ax1.set_ylabel("goodput (req/s meeting SLOs)")
    ax1.set_title("goodput vs arrival rate")
    if slo_tpot_s:
        ax2.axhline(slo_tpot_s * 1000, color="red", linestyle=":", label="TPOT SLO")
    ax2.set_xlabel("arrival rate (req/s, Poisson)")
    ax2.set_ylabel("p99 TPOT (ms)")
    ax2.set_title("p99 TPOT vs arrival rate")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
