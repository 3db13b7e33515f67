"""Settings of a validation run (``spectune validate``'s flags) and the defaults both
engines' pipelines share: where models, prompts and the trace are found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .matrix import Entry
from .runs import RunLog

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = REPO / "traces" / "azure_llm_2023_conv.csv"


@dataclass(frozen=True)
class ValidateSettings:
    """Knobs of :func:`run_validation` (the CLI's flags)."""

    scenario: str
    overrides: tuple[str, ...] = ()
    quick: bool = False
    repeats: int | None = None  # default 2 (quick) / 3 (full)
    report_dir: str | None = None
    models_dir: str | None = None
    prompts: str | None = None
    seed: int = 0
    tuner: bool = True
    tuner_trials: int | None = None
    tuner_repeats: int = 5
    trace: str | None = None
    realtime: bool = True
    calibrate: bool = True
    profiles: bool = True  # measure latency profiles not measured on this machine
    threads: int | None = 1  # torch threads for live runs and profiles (None: torch's)
    entries: tuple[Entry, ...] | None = None  # explicit matrix (tests)
    only: tuple[str, ...] = ()  # keep entries whose id contains one of these
    engine: str = "native"  # native | vllm
    eager: bool = False  # vllm: enforce_eager (profiles and runs alike)
    sweeps: int | None = None  # vllm: sweeps the repeats are split over (default 1 / 2)
    retries: int = 1  # vllm: re-runs of a disturbed run
    progress: bool = True  # progress lines of the profiling steps


def default_dir(scenario: Path, name: str) -> Path:
    for base in (scenario.resolve().parent, scenario.resolve().parent.parent, Path.cwd(), REPO):
        if (base / name).exists():
            return base / name
    return Path.cwd() / name


def load_range(log: RunLog) -> list[float] | None:
    loads = [r["load1"] for r in log.rows if "load1" in r]
    return [float(min(loads)), float(max(loads))] if loads else None
