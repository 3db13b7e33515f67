"""PNG figures for ``recommend --plot`` and ``plan --plot`` (matplotlib, Agg backend).

matplotlib is imported inside the functions, so the CLI only pays for it when a plot is
asked for.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectune.simulator.errors import InputError

from .evaluate import Evaluation

if TYPE_CHECKING:
    from .search import SearchOutcome


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


NARROW_REL_SPAN = 0.005  # an axis whose values span less than 0.5% of their size


def narrow_span(values: list[float], rel: float = NARROW_REL_SPAN) -> tuple[float, float] | None:
    """``(min, max)`` when the finite ``values`` span less than ``rel`` of their mean (an axis
    that would only magnify noise), else None."""
    v = [x for x in values if math.isfinite(x)]
    if len(v) < 2:
        return None
    lo, hi, mid = min(v), max(v), sum(v) / len(v)
    if mid == 0 or (hi - lo) >= rel * abs(mid):
        return None
    return lo, hi


def plot_recommend(out: SearchOutcome, path: str | Path) -> None:
    """Left (search fidelity, labelled): the trials' objective vs k per drafter (chains;
    plain decoding as a line). Right (final fidelity, the runs the table reports): every
    final-fidelity config in (throughput, pQ TPOT), the pick starred, their Pareto front.
    An axis whose values span under 0.5% is not stretched to look meaningful: it is
    centred with a ±1% range and annotated."""
    from .search import pareto_front

    plt = _pyplot()
    objective = "latency" if out.objective == "pareto" else out.objective
    pct = out.best.percentile
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    evals = out.searched
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
        "latency": f"p{pct} TPOT (s)",
    }[objective]
    ax1.set_xlabel("draft length k (chain)")
    ax1.set_ylabel(f"{objective} ({unit})")
    ax1.set_title(
        f"SEARCH fidelity (first {out.search_requests:,} requests): trials' {objective} vs k",
        fontsize=9,
    )
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)

    finals = out.finalists
    front = out.pareto_front or pareto_front(finals)
    thr = [e.value("throughput") for e in finals]
    lat = [e.value("latency") * 1000 for e in finals]
    for ok, style in (
        (True, {"c": "tab:blue", "label": "meets SLOs"}),
        (False, {"c": "tab:red", "marker": "x", "label": "misses SLOs"}),
    ):
        pts = [(t, v) for t, v, e in zip(thr, lat, finals, strict=True) if e.feasible == ok]
        if pts:
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, **style)
    for t, v, e in zip(thr, lat, finals, strict=True):
        ax2.annotate(
            e.config.label(), (t, v), fontsize=6, xytext=(3, 3), textcoords="offset points"
        )
    ax2.scatter(
        [out.best.value("throughput")],
        [out.best.value("latency") * 1000],
        s=160,
        marker="*",
        c="gold",
        edgecolors="black",
        zorder=5,
        label="recommended",
    )
    if len(front) > 1:
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
    ax2.set_ylabel(f"p{pct} TPOT (ms)")
    ax2.set_title(
        f"FINAL fidelity ({out.final_requests:,} requests, as the table): "
        f"throughput vs p{pct} TPOT",
        fontsize=9,
    )
    span = narrow_span(thr)
    if span is not None:
        mid = (span[0] + span[1]) / 2
        ax2.set_xlim(mid * 0.99, mid * 1.01)
        ax2.text(
            0.02,
            0.02,
            f"throughput spans only {span[0]:.2f}-{span[1]:.2f} tok/s (< 0.5%):\n"
            "every config serves the offered load; it does not separate them",
            transform=ax2.transAxes,
            fontsize=7,
            va="bottom",
        )
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


def plot_plan(
    rows: list[dict[str, Any]], slo_tpot_s: float | None, percentile: int, path: str | Path
) -> None:
    """Goodput and TPOT at the SLOs' percentile vs arrival rate, plain decoding vs the best
    SD config; the TPOT SLO line sits on the panel of the same percentile."""
    plt = _pyplot()
    key = f"tpot_p{percentile}_s"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = sorted(rows, key=lambda r: r["rate_per_s"])
    x = [r["rate_per_s"] for r in rows]
    for part, label, style in (("plain", "plain decoding", "--"), ("sd", "best SD config", "-")):
        ax1.plot(x, [r[part]["goodput_req_per_s"] for r in rows], style, marker="o", label=label)
        ax2.plot(x, [r[part][key] * 1000 for r in rows], style, marker="o", label=label)
    ax1.plot(x, x, color="grey", linewidth=0.8, label="offered load")
    ax1.set_xlabel("arrival rate (req/s, Poisson)")
    ax1.set_ylabel("goodput (req/s meeting SLOs)")
    ax1.set_title("goodput vs arrival rate")
    if slo_tpot_s:
        ax2.axhline(slo_tpot_s * 1000, color="red", linestyle=":", label=f"p{percentile} TPOT SLO")
    ax2.set_xlabel("arrival rate (req/s, Poisson)")
    ax2.set_ylabel(f"p{percentile} TPOT (ms)")
    ax2.set_title(f"p{percentile} TPOT vs arrival rate")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_capacity_grid(rows: list[dict[str, Any]], path: str | Path) -> None:
    """GPUs per 1,000 req/s at each grid point's sustained rate, plain decoding beside the
    best SD config (fewer is better); a point with no sustainable rate is left out."""
    plt = _pyplot()
    ok = [r for r in rows if not r.get("error") and r["sd"]["gpus_per_1k_req_per_s"]]
    ok.sort(key=lambda r: r["sd"]["gpus_per_1k_req_per_s"], reverse=True)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ok) + 1.6))
    y = np.arange(len(ok))
    plain = [r["plain"]["gpus_per_1k_req_per_s"] or 0.0 for r in ok]
    sd = [r["sd"]["gpus_per_1k_req_per_s"] for r in ok]
    ax.barh(y + 0.2, plain, height=0.4, label="plain decoding", color="#bbbbbb")
    ax.barh(y - 0.2, sd, height=0.4, label="best SD config", color="#1f77b4")
    ax.set_yticks(y, [r["label"] for r in ok], fontsize=8)
    ax.set_xlabel("GPUs per 1,000 req/s at the max sustainable rate (fewer is better)")
    ax.set_title("capacity grid: GPUs needed per 1,000 req/s under the SLOs")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_sweep(res: Any, path: str | Path) -> None:
    """Throughput and TPOT p50 vs load: plain decoding, each drafter's best k at each level
    (best on that panel's metric) and each speculation policy (one line per policy, the
    drafter's colour); a dotted line marks each line's crossover."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    x = [lv.level for lv in res.levels]
    for ax, m in zip(axes, res.metrics[:2], strict=True):
        scale = 1.0 if m.q is None else 1000.0
        ax.plot(
            x,
            [m.of(lv.plain) * scale for lv in res.levels],
            "--",
            marker="o",
            color="black",
            label="plain decoding",
        )
        colors: dict[str, str] = {}
        styles = ["-", "-.", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1))]
        for d, p, label in res.lines():
            style = styles[([("fixed",)] + [(q,) for q in res.policies]).index((p,)) % 5]
            (line,) = ax.plot(
                x,
                [m.of(res.best(lv, d, m, p)) * scale for lv in res.levels],
                marker="o" if p == "fixed" else ".",
                linestyle=style,
                color=colors.get(d),
                label=label,
            )
            colors.setdefault(d, line.get_color())
            c = res.crossover(d, m, p)
            if c is not None:
                ax.axvline(c, color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(
            {
                "load": "load (x arrival rate)",
                "concurrency": "clients (closed loop)",
                "batch": "max_num_seqs (offline)",
            }[res.axis]
        )
        ax.set_ylabel(m.label + ("" if m.q is None else " (ms)"))
        ax.set_title(f"{m.label} vs {res.axis} (dotted: speculation stops paying)", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    # One legend under both panels: it would hide the curves inside them.
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.13 + 0.035 * math.ceil(len(labels) / 4), wspace=0.25)
    _save(fig, path)
    plt.close(fig)
