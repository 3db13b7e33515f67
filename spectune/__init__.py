"""spectune: speculative-decoding simulator and auto-tuner.

The source folders at the top of the repository are mapped into this package:
``simulator/`` -> ``spectune.simulator`` (pure library, no torch), ``profiler/`` ->
``spectune.profiler`` (torch), ``tuner/`` -> ``spectune.tuner`` (Optuna, the CLI).
"""

from __future__ import annotations

__version__ = "0.1.0"
