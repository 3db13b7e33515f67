"""The GPU cost model: model shapes from Hugging Face configs (dense, MoE, MLA, sliding
windows, EAGLE-1/EAGLE-3/MTP heads), the work of one forward (bytes, FLOPs, collectives),
its price on a device — calibrated on public measurements or as a pure roofline — and the
calibration itself (public points, fit, leave-one-source-out error).

Pure library (no torch); :mod:`spectune.simulator.roofline` and the ``roofline`` command
build on it.
"""

from __future__ import annotations
