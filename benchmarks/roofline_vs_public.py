"""Roofline batch-1 decode latency beside public measurements (the table in hwprofiles/README.md).

Public numbers are tokens/s at batch 1 from the sources' own READMEs (bf16, short prompt,
~200 generated tokens, so the mean context is ~100 tokens: we price context 128). The
roofline uses the shipped efficiency factors unchanged; nothing here is fitted to them.

Run: ``.venv/bin/python benchmarks/roofline_vs_public.py``
"""

from __future__ import annotations

from dataclasses import replace

from spectune.simulator.hardware import get_arch, get_device
from spectune.simulator.roofline import forward_ms

TORCHAO = "https://github.com/pytorch/ao/blob/main/torchao/quantization/README.md"
GPT_FAST = "https://github.com/pytorch-labs/gpt-fast/blob/main/README.md"
CONTEXT = 128

# Llama-2-70B is not shipped; it is Llama-3.1-70B's shape with Llama-2's 32k vocabulary.
LLAMA2_70B = replace(get_arch("llama-3.1-70b"), slug="llama-2-70b", name="Llama-2-70B", vocab=32000)

# (model label, arch, device slug, tp, public tok/s, source, note)
ROWS = [
    ("Llama-3.1-8B", get_arch("llama-3.1-8b"), "h100-sxm", 1, 126.90, TORCHAO,
     "torchao generate.py, torch.compile; H100 variant not stated"),
    ("Llama-3-8B (same shape)", get_arch("llama-3.1-8b"), "a100-80gb", 1, 95.64, TORCHAO,
     "torchao generate.py, torch.compile"),
    ("Llama-2-7B", get_arch("llama-2-7b"), "a100-80gb", 1, 107.38, TORCHAO,
     "torchao generate.py, torch.compile"),
    ("Llama-2-7B", get_arch("llama-2-7b"), "a100-80gb", 1, 104.9, GPT_FAST,
     "gpt-fast, torch.compile, A100 power-capped at 330 W"),
    ("Llama-2-70B", LLAMA2_70B, "a100-80gb", 4, 38.01, GPT_FAST,
     "gpt-fast TP4, 330 W cap"),
    ("Llama-2-70B", LLAMA2_70B, "a100-80gb", 8, 62.50, GPT_FAST,
     "gpt-fast TP8, 330 W cap"),
]  # fmt: skip


def main() -> None:
    print("| model | device | TP | roofline ms/token | public ms/token (tok/s) | gap | source |")
    print("|---|---|---|---|---|---|---|")
    for label, arch, dev, tp, tok_s, src, note in ROWS:
        roof = forward_ms(get_device(dev), arch, tp, 1, 1, CONTEXT)
        pub = 1000.0 / tok_s
        gap = (roof - pub) / pub * 100.0
        print(
            f"| {label} | {dev} | {tp} | {roof:.2f} | {pub:.2f} ({tok_s:g}) | {gap:+.0f}% | "
            f"[{note}]({src}) |"
        )


if __name__ == "__main__":
    main()
