"""spectune: speculative-decoding simulator and auto-tuner.

The source folders at the top of the repository are mapped into this package:
``simulator/`` -> ``spectune.simulator`` (pure library, no torch), ``tuner/`` ->
``spectune.tuner`` (Optuna search over the simulator), ``profiler/`` -> ``spectune.profiler``
(measurement on a device, torch), ``validation/`` -> ``spectune.validation`` (predicted vs
live). This folder is the application: ``cli`` and one module per command in ``commands/``,
``output`` (tables, JSON). Imports flow one way:
simulator <- tuner <- application, simulator <- profiler <- validation <- application,
tuner <- validation (tests/test_layout.py checks it).
"""

from __future__ import annotations

__version__ = "0.1.0"
