"""The calibrated scenario a validation leaves beside its report.

The host overheads that calibration fits (:mod:`.overhead`) and the live engine's
scheduling rules (each prompt its own prefill, attention over the batch's longest context,
model drafters re-feeding a tree's upper levels) are what make the simulator match this
machine's live runs; without them the shipped CPU scenario predicts several times the live
throughput. :func:`write_calibrated_scenario` writes the scenario with all of them filled in
(and the latency profiles measured here, when the validation measured them), so that
``spectune simulate`` / ``recommend`` on it predict what the validation scored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from spectune.simulator.scenario import ResolvedScenario, load_scenario

CALIBRATED_NAME = "calibrated-scenario.yaml"
NATIVE_RULES = "serving.prefill: separate, attention_context: max, drafters' tree_draft: refeed"


def write_calibrated_scenario(
    rs: ResolvedScenario,
    scenario_path: str | Path,
    out_dir: str | Path,
    latency_profiles: dict[str, Path] | None = None,
    how: str = "",
    rules: str = NATIVE_RULES,
) -> Path:
    """Write ``rs``'s scenario (overheads and live-engine rules applied) as YAML in
    ``out_dir``, every path in it relative to that folder; check that it loads.

    Args:
        rs: the scenario the validation predicted with (overheads applied).
        scenario_path: the scenario file it came from (its relative paths resolve there).
        out_dir: the report folder.
        latency_profiles: ``"target"`` or a drafter name -> a latency profile measured by
            the validation, used instead of the scenario's.
        how: one line on how the overheads were measured, for the file's header.
        rules: the engine rules it carries, for the header.

    Returns:
        The written file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / CALIBRATED_NAME
    base = Path(scenario_path).resolve().parent
    latency_profiles = latency_profiles or {}
    data: dict[str, Any] = rs.scenario.model_dump(mode="json", by_alias=True, exclude_none=True)

    def rel(p: str | Path) -> str:
        q = Path(p)
        if not q.is_absolute():
            q = base / q if (base / q).exists() else Path.cwd() / q
        return os.path.relpath(q.resolve(), out_dir.resolve())

    data["target"]["latency_profile"] = rel(
        latency_profiles.get("target", data["target"]["latency_profile"])
    )
    for d in data.get("drafters", []):
        if "latency_profile" in d:
            d["latency_profile"] = rel(latency_profiles.get(d["name"], d["latency_profile"]))
        if "profile" in d["acceptance"]:
            d["acceptance"]["profile"] = rel(d["acceptance"]["profile"])
    wl = data["workload"]
    if "trace" in wl:
        wl["trace"] = rel(rs.trace_path or wl["trace"])
    if wl.get("tokenizer") not in (None, "bytes", "approx"):
        wl["tokenizer"] = rel(wl["tokenizer"])
    header = (
        f"# Calibrated by `spectune validate` from {scenario_path}: host overheads fitted on "
        "this machine's live runs\n"
        f"# ({how or 'calibration runs'}) in serving.step_overhead_* and each drafter's "
        "step_overhead_*,\n"
        f"# and the engine's rules ({rules}).\n"
        "# Paths are relative to this file. Acceptance stays the scenario's profiles.\n"
        "# Use it as any scenario: spectune simulate THIS_FILE\n"
    )
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False, width=100))
    load_scenario(tmp)  # what is written must load (raises InputError otherwise)
    tmp.replace(out)
    return out
