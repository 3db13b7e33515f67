"""Capacity studies: ``spectune plan --grid GRID.yaml``, one capacity plan per grid point.

A grid file spans devices, models (with their tensor-parallel size), drafters or policies
and workloads around one base scenario; every point is planned as ``spectune plan`` plans
one scenario (:func:`~spectune.tuner.plan.plan`: the highest Poisson rate a replica
sustains in steady state under the SLOs, with and without SD), and the points are compared
per GPU: GPUs per 1,000 req/s and output tokens per GPU-second at the sustained rate.

The grid runs as an Optuna study (one trial per point, enqueued once; the study's storage
is a journal file or a database), so it resumes after a kill (a finished point is never
recomputed) and any number of workers share it: ``--workers N`` locally, ``spectune worker
STUDY --storage URL`` on other machines (:mod:`.jobs`).

Grid file (``schema: spectune/plan-grid/v1``)::

    base: azure-conv-h100.yaml        # the scenario each point starts from
    qps: 100                          # optional: the target rate replicas are sized for
    requests: 2000                    # optional: Poisson arrivals per probed rate
    axes:
      device: [h100-sxm, a100-80gb]   # profile folders beside the base's (hwprofiles/<device>/)
      model:                          # target profile names in those folders ...
        llama-3.1-8b: {}              # ... its drafters' profiles keep their file names
        llama-3.1-70b-tp4:            # ... or are named per drafter
          drafters: {eagle: eagle3-llama-3.1-70b-tp4}
          search: [none, eagle]       # optional: the drafters searched with this model
      workload:                       # any other axis: labelled --set overrides
        chat: {}
        4x-shorter-gaps: {workload.time_scale: 4}
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import Field

from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.loading import apply_overrides, read_yaml, resolve_path, validate_model
from spectune.simulator.scenario import ResolvedScenario, resolve_scenario
from spectune.simulator.schema import Scenario
from spectune.simulator.schema_base import MAX_REQUESTS, Frozen

from . import study as st
from .jobs import Helpers, Job, helping
from .plan import DEFAULT_REQUESTS, plan

GRID_SCHEMA = "spectune/plan-grid/v1"
POINT_ATTR = "spectune_point"  # a finished trial's plan summary
MAX_POINTS = 2000


class ModelEntry(Frozen):
    """One value of the ``model`` axis."""

    drafters: dict[str, str] = Field(default_factory=dict)
    """Drafter name -> latency-profile file name (without ``.yaml``) in the device folder;
    drafters not named keep their base file name."""
    search: list[str] | None = None
    """The drafters searched with this model (``search.drafters``); default: the base's."""


class GridFile(Frozen):
    """A capacity grid (module docstring)."""

    schema_: Literal["spectune/plan-grid/v1"] = Field(alias="schema")
    base: Path
    """The scenario every point starts from (relative to the grid file)."""
    qps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Target arrival rate (req/s): replicas and GPUs each point needs for it."""
    requests: int = Field(default=DEFAULT_REQUESTS, ge=100, le=MAX_REQUESTS)
    """Poisson arrivals simulated per probed rate."""
    seed: int | None = Field(default=None, ge=0)
    """Simulator seed (default: the base scenario's)."""
    objective: str | None = None
    """How configs meeting the SLOs are ranked at a rate (plan's --objective)."""
    axes: dict[str, Any] = Field(min_length=1)
    """Axis name -> values: ``device`` (list of folder names), ``model`` (list of
    profile names, or a mapping name -> :class:`ModelEntry`), any other axis a mapping of
    labels to ``--set`` overrides (``{dotted.key: value}``)."""


@dataclass(frozen=True)
class Point:
    """One grid point: its coordinates and the scenario planned there."""

    label: str
    coords: dict[str, str]
    scenario: ResolvedScenario = field(repr=False)
    gpus_per_replica: int


@dataclass(frozen=True)
class Grid:
    path: Path
    spec: GridFile
    points: list[Point]
    fingerprint: str


def load_grid(path: str | Path) -> Grid:
    """Read a grid file and build every point's scenario (so a bad point fails now).

    Raises:
        InputError: one line naming the grid file and field (unknown device or model, a
            profile missing for a drafter, an override the scenario schema refuses).
    """
    path = Path(path)
    raw = read_yaml(path)
    spec: GridFile = validate_model(GridFile, raw, path)
    base = resolve_path(spec.base, path.parent, path, "base")
    base_raw = read_yaml(base)
    axes = [(name, _axis_values(path, name, vals)) for name, vals in spec.axes.items()]
    n = math.prod(len(v) for _, v in axes)
    if n > MAX_POINTS:
        raise InputError(f"{n:,} points; at most {MAX_POINTS:,}", source=path, field="axes")
    points = []
    for combo in itertools.product(*(v for _, v in axes)):
        coords = {name: label for (name, _), (label, _) in zip(axes, combo, strict=True)}
        data, model = base_raw, None
        for (name, _), (label, value) in zip(axes, combo, strict=True):
            if name == "model":
                model = value or None
            elif name != "device":
                data = _apply(path, data, name, label, value)
        if "device" in coords or "model" in coords:  # after the overrides: one rewrite
            data = _profiles(path, base, data, coords, model)
        label = " ".join(f"{k}={v}" for k, v in coords.items())
        source = f"{path} point '{label}'"
        sc: Scenario = validate_model(Scenario, data, source)
        rs = resolve_scenario(sc, base_dir=base.parent, source=source)
        if not (sc.slo.ttft_s or sc.slo.tpot_s or sc.slo.e2e_s):
            raise InputError("the base scenario has no SLOs to plan against", source=base)
        points.append(Point(label, coords, rs, max(1, int(rs.target.model.tensor_parallel))))
    blob = json.dumps(
        [spec.model_dump(mode="json", by_alias=True, exclude={"qps"})]
        + [p.scenario.scenario.model_dump(mode="json", by_alias=True) for p in points],
        sort_keys=True,
        default=str,
    )
    return Grid(path, spec, points, hashlib.sha256(blob.encode()).hexdigest()[:16])


def _axis_values(path: Path, name: str, vals: Any) -> list[tuple[str, Any]]:
    where = f"axes.{name}"
    if name in ("device", "model") and isinstance(vals, list):
        if not vals or not all(isinstance(v, str) and v for v in vals):
            raise InputError("must be a non-empty list of names", source=path, field=where)
        return [(v, {}) for v in vals]
    if not isinstance(vals, dict) or not vals:
        raise InputError(
            "must be a non-empty mapping of labels to settings"
            + (" (or a list of names)" if name in ("device", "model") else ""),
            source=path,
            field=where,
        )
    out = []
    for label, v in vals.items():
        v = {} if v is None else v
        if not isinstance(v, dict):
            raise InputError("must be a mapping", source=path, field=f"{where}.{label}")
        if name == "model":
            v = validate_model(ModelEntry, v, f"{path} ({where}.{label})")
        out.append((str(label), v))
    return out


def _apply(path: Path, data: dict[str, Any], axis: str, label: str, value: Any) -> dict[str, Any]:
    """``data`` with one override axis's value applied (a copy)."""
    where = f"axes.{axis}.{label}"
    sets = [f"{k}={json.dumps(v)}" for k, v in value.items()]
    try:
        return apply_overrides(data, sets)
    except InputError as e:
        raise InputError(e.message, source=path, field=f"{where}.{e.field or ''}") from None


def _profiles(
    path: Path,
    base: Path,
    data: dict[str, Any],
    coords: dict[str, str],
    model: ModelEntry | None,
) -> dict[str, Any]:
    """Latency-profile paths for the point's device and model (device folders sit side by
    side: ``<root>/<device>/<profile>.yaml``, the layout of ``hwprofiles/``); a copy. Other
    paths stay relative to the base scenario, whose folder resolves them."""
    data = copy.deepcopy(data)
    target = data.get("target") or {}
    lp = target.get("latency_profile")
    if not lp:
        raise InputError("has no target.latency_profile to move", source=base, field="target")
    now = resolve_path(Path(lp), base.parent, base, "target.latency_profile")
    root, device = now.parent.parent, coords.get("device", now.parent.name)
    known = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.yaml")))
    if not (root / device).is_dir() or device not in known:
        raise InputError(
            f"unknown device '{device}' (devices in {root}: {', '.join(known)})",
            source=path,
            field=f"axes.device.{device}",
        )
    folder = root / device
    name = coords.get("model", now.stem)
    models = sorted(p.stem for p in folder.glob("*.yaml"))
    if not (folder / f"{name}.yaml").is_file():
        raise InputError(
            f"no profile '{name}' on device '{device}' (profiles there: {', '.join(models)})",
            source=path,
            field=f"axes.model.{name}",
        )
    target["latency_profile"] = _rel(folder / f"{name}.yaml", base)
    entry = model or ModelEntry()
    drafters = data.get("drafters") or []
    names = {d.get("name") for d in drafters}
    for dname in entry.drafters:
        if dname not in names:
            raise InputError(
                f"no drafter '{dname}' in the base scenario (drafters: "
                f"{', '.join(str(n) for n in names)})",
                source=path,
                field=f"axes.model.{name}.drafters.{dname}",
            )
    for i, d in enumerate(drafters):
        if not d.get("latency_profile"):
            continue
        cur = resolve_path(Path(d["latency_profile"]), base.parent, base, f"drafters.{i}")
        stem = entry.drafters.get(d.get("name"), cur.stem)
        new = folder / f"{stem}.yaml"
        if not new.is_file():
            raise InputError(
                f"no profile '{stem}' for drafter '{d.get('name')}' on device '{device}' "
                f"(name one under axes.model.{name}.drafters; profiles there: "
                f"{', '.join(models)})",
                source=path,
                field=f"axes.model.{name}",
            )
        d["latency_profile"] = _rel(new, base)
    if entry.search is not None:
        data.setdefault("search", {})["drafters"] = list(entry.search)
    return data


def _rel(p: Path, base: Path) -> str:
    """``p`` relative to the base scenario's folder, so that a point's scenario (and the
    study's fingerprint) does not depend on where the checkout lives."""
    return os.path.relpath(p.resolve(), base.parent.resolve())


# ------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class GridSettings:
    """How a grid is run (CLI flags of ``plan --grid``)."""

    storage: str | None = None
    study_name: str | None = None
    progress: bool | None = None
    helpers: Helpers | None = None  # local worker processes (:func:`.worker.local_helpers`)


@dataclass
class GridOutcome:
    grid: Grid
    study_name: str
    storage: str
    points: dict[str, dict[str, Any]]  # label -> summary (see point_summary)
    ran: int
    wall_s: float


def default_storage(grid_path: Path) -> str:
    """Where a grid's study lives unless ``--storage`` says: a journal file in the current
    folder, named after the grid (so rerunning the command resumes)."""
    return f"{grid_path.stem}.plan-study.log"


def point_summary(pt: Point, res: Any) -> dict[str, Any]:
    """What one point reports: rates, the config at the maximum, per-GPU figures."""
    gpus = pt.gpus_per_replica

    def per_gpu(rate: float, checks: list[Any]) -> dict[str, Any]:
        m = checks[0].evaluation.metrics if checks else {}
        tok = float(m.get("throughput_tok_per_s") or 0.0)
        return {
            "max_rate_per_s": rate,
            "gpus_per_1k_req_per_s": 1000.0 * gpus / rate if rate > 0 else None,
            "output_tok_per_gpu_s": tok / gpus if rate > 0 else None,
        }

    return {
        "label": pt.label,
        "coords": pt.coords,
        "gpus_per_replica": gpus,
        "plain": per_gpu(res.max_rate_plain, res.checks_plain),
        "sd": per_gpu(res.max_rate_sd, res.checks_sd),
        "config_at_max": res.config_at_max,
        "sd_gain": res.max_rate_sd / res.max_rate_plain if res.max_rate_plain > 0 else None,
        "simulations": res.simulations,
        "error": None,
    }


def sized(summary: dict[str, Any], qps: float | None) -> dict[str, Any]:
    """Replicas and GPUs for ``qps`` req/s with and without SD (None without a rate)."""
    out: dict[str, Any] = {}
    for part in ("plain", "sd"):
        rate = (summary.get(part) or {}).get("max_rate_per_s") or 0.0
        reps = math.ceil(qps / rate) if qps and rate > 0 else None
        gpus = reps * summary["gpus_per_replica"] if reps is not None else None
        out[part] = {"replicas": reps, "gpus": gpus}
    return out


def run_grid_study(grid: Grid, s: GridSettings, *, limit: int | None = None) -> GridOutcome:
    """Plan every point of ``grid`` in a shared, resumable study (module docstring).

    Args:
        grid: from :func:`load_grid`.
        s: storage, study name, progress, local worker processes.
        limit: stop after this many points in this process (``worker --n-trials``).

    Raises:
        InputError: a storage or study that belongs to another grid.
    """
    t0 = time.perf_counter()
    st.quiet_optuna()
    storage_url = s.storage or default_storage(grid.path)
    name = s.study_name or f"plan-grid-{grid.path.stem}"
    spec = grid.spec
    job = Job(
        kind="plan-grid",
        file=str(grid.path.resolve()),
        settings={},
    ).to_attr()
    study = st.open_study(
        name,
        st.make_storage(storage_url),
        ["maximize"],
        st.make_sampler("grid", 0, len(grid.points)),
        grid.fingerprint,
        owner=f"capacity grid {grid.path} ({len(grid.points)} points)",
        job=job,
    )
    by_label = {p.label: p for p in grid.points}
    labels = [p.label for p in grid.points]

    def objective(trial: optuna.Trial) -> float:
        label = trial.suggest_categorical("point", labels)
        pt = by_label[label]
        try:
            res = plan(
                pt.scenario,
                requests=spec.requests,
                seed=spec.seed,
                objective=spec.objective,
                workers=1,
            )
            summary = point_summary(pt, res)
        except SpectuneError as e:  # e.g. no rate meets the SLOs there: a result, not a crash
            summary = {"label": label, "coords": pt.coords, "error": str(e)}
        trial.set_user_attr(POINT_ATTR, summary)
        return float((summary.get("sd") or {}).get("max_rate_per_s") or 0.0)

    with helping(s.helpers, name, storage_url):
        ran = st.run_queue(
            study,
            objective,
            [{"point": lb} for lb in labels],
            progress=s.progress,
            desc="grid points",
            limit=limit,
        )
    points: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=st.FINISHED):
        summary = t.user_attrs.get(POINT_ATTR)
        if summary and summary.get("label") in by_label:
            points.setdefault(summary["label"], summary)
    return GridOutcome(grid, name, storage_url, points, ran, time.perf_counter() - t0)
