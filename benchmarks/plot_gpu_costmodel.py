"""Figures of the GPU cost model for hwprofiles/README.md (PNGs into hwprofiles/plots/).

- ``decode_vs_batch_measured.png``: every public decode sweep (GPU x model x dtype x
  context): measured points, the calibrated model's held-out predictions of them (fit
  without the point's source group; hwprofiles/calibration/predictions.csv, written by
  ``benchmarks/calibrate_gpu.py --write``), and the calibrated and pure-roofline curves.
- ``decode_vs_batch_shipped.png``: decode step vs batch at context 2048 for the shipped
  targets on every GPU, calibrated (solid) vs roofline (dashed), with any public batch-1
  figure of that GPU and model.
- ``verify_ratio.png``: cost of verifying B x (k+1) tokens over B x 1 tokens against B,
  per GPU, for a dense and an MoE target, calibrated vs roofline.

Run: ``.venv/bin/python benchmarks/plot_gpu_costmodel.py``
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from spectune.simulator.costmodel.calibration import DATA_DIR
from spectune.simulator.costmodel.catalog import get_model
from spectune.simulator.costmodel.model import calibrated_model, roofline_model
from spectune.simulator.hardware import DEVICES

OUT = Path(__file__).resolve().parents[1] / "hwprofiles" / "plots"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def read_predictions() -> list[dict[str, str]]:
    with open(DATA_DIR / "predictions.csv") as f:
        return list(csv.DictReader(f))


def sweeps(rows: list[dict[str, str]]) -> dict[tuple, list[dict[str, str]]]:
    """Decode points grouped by (device, model, tp, dtype, context, source)."""
    out = defaultdict(list)
    for r in rows:
        if r["category"] == "decode" and r["source_id"] in (
            "lmdeploy_a100_fp16",
            "silybench_qwen3_8b_h100",
            "nim_bench",
        ):
            key = (
                r["device"],
                r["model"],
                int(r["tp"]),
                r["dtype"],
                float(r["context"]),
                r["source_id"],
            )
            out[key].append(r)
    return {k: v for k, v in out.items() if len(v) >= 3}


def plot_measured(rows: list[dict[str, str]]) -> Path:
    groups = sweeps(rows)
    panels = defaultdict(list)
    for key in groups:
        panels[(*key[:4], key[5])].append(key)
    n = len(panels)
    cols = 3
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(15, 4.2 * ((n + 2) // 3)))
    for ax, (panel, keys) in zip(axes.flat, sorted(panels.items()), strict=False):
        device, model, tp, dtype, source = panel
        shape = get_model(model)
        cal = calibrated_model(
            DEVICES[device], shape, tp, dtype, "fp8" if source == "nim_bench" else "bf16"
        )
        roof = roofline_model(
            DEVICES[device], shape, tp, dtype, "fp8" if source == "nim_bench" else "bf16"
        )
        for j, key in enumerate(sorted(keys, key=lambda k: k[4])):
            color = f"C{j}"
            pts = sorted(groups[key], key=lambda r: int(r["batch"]))
            bs = [int(r["batch"]) for r in pts]
            ctx = key[4]
            ax.plot(
                bs,
                [float(r["measured"]) for r in pts],
                "o",
                color=color,
                label=f"measured, ctx {ctx:g}",
            )
            ax.plot(bs, [float(r["held_out"]) for r in pts], "x", color=color, ms=8)
            grid = [b for b in BATCHES if b <= max(bs) * 1.01]
            if source != "nim_bench":  # NIM's mean ITL adds other requests' prefills
                ax.plot(grid, [cal.forward_ms(b, 1, ctx) for b in grid], "-", color=color, lw=1)
                ax.plot(grid, [roof.forward_ms(b, 1, ctx) for b in grid], "--", color=color, lw=1)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{device} {model} tp{tp} {dtype}\n({source})", fontsize=9)
        ax.set_xlabel("batch (sequences in the decode step)")
        ax.set_ylabel("ms per decode step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(
        "Public decode sweeps: o measured, x calibrated held-out prediction "
        "(fit without that source), - calibrated, -- pure roofline"
    )
    fig.tight_layout()
    path = OUT / "decode_vs_batch_measured.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


TARGETS = (("llama-3.1-8b", 1), ("qwen3-8b", 1), ("qwen3-30b-a3b", 2), ("llama-3.1-70b", 4))


def plot_shipped(rows: list[dict[str, str]]) -> Path:
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(18, 4.2))
    b1 = defaultdict(list)
    for r in rows:
        if r["category"] == "decode" and r["batch"] == "1" and r["dtype"] == "bf16":
            b1[(r["device"], r["model"], int(r["tp"]))].append(float(r["measured"]))
    for ax, (model, tp) in zip(axes, TARGETS, strict=True):
        for j, dev in enumerate(DEVICES):
            color = f"C{j}"
            cal = calibrated_model(DEVICES[dev], get_model(model), tp)
            roof = roofline_model(DEVICES[dev], get_model(model), tp)
            ax.plot(
                BATCHES, [cal.forward_ms(b, 1, 2048) for b in BATCHES], "-", color=color, label=dev
            )
            ax.plot(BATCHES, [roof.forward_ms(b, 1, 2048) for b in BATCHES], "--", color=color)
            for v in b1.get((dev, model, tp), []):
                ax.plot([1], [v], "o", color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{model} tp{tp}, context 2048", fontsize=10)
        ax.set_xlabel("batch")
        ax.set_ylabel("ms per decode step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Shipped profiles: - calibrated, -- pure roofline, o public batch-1 figure")
    fig.tight_layout()
    path = OUT / "decode_vs_batch_shipped.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_verify_ratio() -> Path:
    fig, axes = plt.subplots(2, len(DEVICES), figsize=(20, 7.5), sharey="row")
    batches = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    for row, (model, tp) in enumerate((("llama-3.1-8b", 1), ("qwen3-30b-a3b", 2))):
        for ax, dev in zip(axes[row], DEVICES, strict=True):
            cal = calibrated_model(DEVICES[dev], get_model(model), tp)
            roof = roofline_model(DEVICES[dev], get_model(model), tp)
            for j, k in enumerate((1, 3, 7)):
                for m, style in ((cal, "-"), (roof, "--")):
                    r = [m.forward_ms(b, k + 1, 2048) / m.forward_ms(b, 1, 2048) for b in batches]
                    ax.plot(
                        batches, r, style, color=f"C{j}", label=f"k={k}" if style == "-" else None
                    )
            ax.set_xscale("log", base=2)
            ax.set_title(f"{dev}: {model} tp{tp}", fontsize=9)
            ax.set_xlabel("batch B")
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("verify cost B(k+1) / decode cost B")
        axes[row][0].legend(fontsize=8)
    fig.suptitle("Verify-to-decode cost ratio at context 2048: - calibrated, -- pure roofline")
    fig.tight_layout()
    path = OUT / "verify_ratio.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = read_predictions()
    for path in (plot_measured(rows), plot_shipped(rows), plot_verify_ratio()):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
