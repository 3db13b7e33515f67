"""Acceptance profiles for a validation's own workload.

Acceptance depends on the data (an acceptance profile names its dataset): a profile
measured on one prompt set predicts another only roughly (measured here: the byte target's
n-gram and self drafters accept 5-10% more on the validation's prompt windows than on the
``examples/prompts/stdlib.txt`` snippets). So a validation measures, with
:func:`~.acceptance.measure_acceptance` (greedy, exact by teacher forcing), each drafter's
acceptance on prompts of its own workload — drawn like the live runs' prompts but on the
*calibration* seed, so the scored runs' requests are not the ones measured — with as many
generated tokens as its mean output length. Profiles are written to
``<report dir>/acceptance/`` and reused by later runs with the same lengths and seed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import dump_yaml, load_acceptance_profile

from .acceptance import DrafterSpec, build_profile, measure_acceptance
from .live_models import NGRAM_MAX_N, LiveModels
from .serve import PromptSource, prompt_rng, request_set
from .validation import Entry, Workloads, entry_scenario

K, WIDTH = 8, 8


def workload_acceptance(
    rs: ResolvedScenario,
    models: LiveModels,
    prompts: PromptSource,
    workloads: Workloads,
    out_dir: Path,
    seed: int,
) -> tuple[ResolvedScenario, list[str]]:
    """``rs`` with every drafter's acceptance measured on the validation workload.

    Args:
        rs: the scenario.
        models: live models.
        prompts: the live runs' prompt source.
        workloads: the validation's workloads (lengths).
        out_dir: report folder.
        seed: the calibration seed (not the scored runs' seed).

    Returns:
        (the scenario with the measured acceptance, notes).
    """
    import torch

    plain = entry_scenario(rs, workloads, Entry("offline", "none", max_num_seqs=1))
    req = request_set(plain, seed)
    contents = prompts.prompts(req.prompt_tokens.tolist(), prompt_rng(seed))
    new_tokens = max(2, round(float(np.mean(req.output_tokens))))
    key = json.dumps(
        {"lengths": workloads.lengths.__dict__, "seed": seed, "tokens": new_tokens},
        sort_keys=True,
    )
    folder = out_dir / "acceptance"
    folder.mkdir(parents=True, exist_ok=True)
    drafters = dict(rs.drafters)
    notes = []
    for name, rd in rs.drafters.items():
        path = folder / f"{name}.yaml"
        stamp = path.with_suffix(".key")
        if path.is_file() and stamp.is_file() and stamp.read_text() == key:
            prof = load_acceptance_profile(path)
        else:
            spec = DrafterSpec(
                kind=rd.spec.kind,
                name=name,
                model=models.draft_models.get(name),
                self_layers=rd.spec.self_layers,
                ngram_max_n=NGRAM_MAX_N,
            )
            with torch.inference_mode():
                reqs, _ = measure_acceptance(
                    models.target.model,
                    spec,
                    [c.tolist() for c in contents],
                    0.0,
                    k=K,
                    width=WIDTH,
                    max_new_tokens=new_tokens,
                    seed=seed,
                )
            how = (
                f"spectune validate: {len(contents)} prompts of the validation workload "
                f"(calibration seed {seed}), {new_tokens} greedy target tokens each, exact "
                "teacher-forced acceptance"
            )
            prof = build_profile(
                reqs, models.target.name, spec, "validation-workload", 0.0, K, how, seed=seed
            )
            dump_yaml(prof, path)
            stamp.write_text(key)
        drafters[name] = ResolvedDrafter(
            spec=rd.spec, acceptance=prof.acceptance, latency=rd.latency
        )
        a = prof.acceptance
        notes.append(
            f"{name}: acceptance measured on the validation workload: a_1 "
            f"{a.per_position[0]:.3f} (scenario's profile: "
            f"{rd.acceptance.per_position[0]:.3f}), spread {a.spread:.3f} -> {path}"
        )
    return replace(rs, drafters=drafters), notes
