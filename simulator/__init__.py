"""spectune's simulator: a pure library (no torch).

``simulate(load_scenario(path))`` runs the discrete-event model of a vLLM-like engine
serving speculative decoding; :mod:`.analytic` holds the closed forms.

Imports nothing of spectune's other packages, and no torch or engine package: every other
package builds on it (its YAML schemas are the contract between profiler and simulator).
"""

from __future__ import annotations

from .api import SimResult, simulate
from .scenario import ResolvedScenario, load_scenario

__all__ = ["ResolvedScenario", "SimResult", "load_scenario", "simulate"]
