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

Per-position acceptance *as the engine visits it*: the profiler's ``a_i`` averages over
every start position of a trajectory, but a chain-drafting engine starts its steps where
the previous step stopped, and it stops early (more steps per token) where acceptance is
low, so its steps over-sample low-acceptance stretches (measured here on the byte target:
n-gram a_1 0.57 over all starts vs 0.41 over the starts a k = 4 engine visits, which the
live engine's counters reproduce exactly). :func:`visited_per_position` replays greedy
chain drafting with ``K`` drafts on each trajectory (exact at T = 0) and takes ``a_i`` over
the visited steps, a step without a draft (an n-gram miss) counting as a rejection, as the
simulator's steps do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from spectune.profiler.live import PromptSource, prompt_rng, request_set
from spectune.profiler.measure.acceptance import (
    DrafterSpec,
    build_profile,
    measure_acceptance,
)
from spectune.profiler.measure.trajectories import match_rows, visited_per_position
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import dump_yaml, load_acceptance_profile
from spectune.simulator.trajectory import replay_tree
from spectune.simulator.tree import Tree

from .live_models import NGRAM_MAX_N, LiveModels
from .matrix import Entry, Workloads, entry_scenario

K, WIDTH = 8, 8
NUM_PROMPTS = 96


def workload_acceptance(
    rs: ResolvedScenario,
    models: LiveModels,
    prompts: PromptSource,
    workloads: Workloads,
    out_dir: Path,
    seed: int,
) -> tuple[ResolvedScenario, list[str], dict[str, dict[int, list[float]]]]:
    """``rs`` with every drafter's acceptance measured on the validation workload.

    Args:
        rs: the scenario.
        models: live models.
        prompts: the live runs' prompt source.
        workloads: the validation's workloads (lengths).
        out_dir: report folder.
        seed: the calibration seed (not the scored runs' seed).

    Returns:
        (the scenario with the measured acceptance — per_position replayed at ``K`` —,
        notes, per drafter its :class:`Replay`).
    """
    import torch

    plain = entry_scenario(rs, workloads, Entry("offline", "none", max_num_seqs=1))
    # Many requests: acceptance varies a lot from request to request (spread ~0.15 on the
    # byte demo target), so a workload-sized sample would carry that noise into every
    # prediction.
    plain = plain.with_workload(num_requests=NUM_PROMPTS)
    req = request_set(plain, seed)
    contents = prompts.prompts(req.prompt_tokens.tolist(), prompt_rng(seed))
    # Each prompt generates its request's own output length: acceptance changes along a
    # trajectory (this target loops more the longer it runs), so trajectories of the mean
    # length under-weight the late positions long requests spend most tokens in (measured:
    # --quick's drafter accepted 12% more live than on 40-token trajectories).
    new_tokens = [max(2, int(n)) for n in req.output_tokens]
    key = json.dumps(
        {
            "lengths": workloads.lengths.__dict__,
            "seed": seed,
            "tokens": new_tokens,
            "prompts": NUM_PROMPTS,
        },
        sort_keys=True,
    )
    folder = out_dir / "acceptance"
    folder.mkdir(parents=True, exist_ok=True)
    drafters = dict(rs.drafters)
    notes = []
    replays: dict[str, Replay] = {}
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
                f"(calibration seed {seed}), each with its request's output length "
                f"({min(new_tokens)}-{max(new_tokens)} greedy target tokens), exact "
                "teacher-forced acceptance"
            )
            prof = build_profile(
                reqs, models.target.name, spec, "validation-workload", 0.0, K, how, seed=seed
            )
            per_k = {k: visited_per_position(reqs, k) for k in range(1, K + 1)}
            acc = prof.acceptance.model_copy(update={"per_position": per_k[K]})
            prof = prof.model_copy(update={"acceptance": acc})
            dump_yaml(prof, path)
            path.with_suffix(".per_k.json").write_text(json.dumps(per_k))
            rows = [match_rows(r).astype(np.int16) for r in reqs]
            np.savez(
                path.with_suffix(".match.npz"),
                ranks=np.concatenate(rows) if rows else np.zeros(0, np.int16),
                lengths=np.array([len(r) for r in rows], dtype=np.int64),
            )
            stamp.write_text(key)
        replays[name] = Replay.load(path)
        # The replayed vectors pool every visited step, so a request that accepts little
        # already weighs in by its extra steps; drawing per-request levels around them
        # too would count that twice (measured: --quick's drafter k=4 fell from 3.09
        # tokens/step, the replay, to 2.75 in the DES; live 3.11). Requests are alike.
        pooled = prof.acceptance.model_copy(update={"spread": 0.0, "per_request": None})
        drafters[name] = ResolvedDrafter(spec=rd.spec, acceptance=pooled, latency=rd.latency)
        a = prof.acceptance
        notes.append(
            f"{name}: acceptance measured on the validation workload: a_1 "
            f"{a.per_position[0]:.3f} (scenario's profile: "
            f"{rd.acceptance.per_position[0]:.3f}), spread {a.spread:.3f} -> {path}"
        )
    return replace(rs, drafters=drafters), notes, replays


@dataclass(frozen=True)
class Replay:
    """One drafter's engine replays on the calibration trajectories.

    Attributes:
        per_k: per chain length k = 1..K, a_1..a_k over the steps a k-chain engine visits.
        match: per request, the rank of the trajectory's token among the drafter's
            candidates at each start (-1 = none): what a tree replay walks.
    """

    per_k: dict[int, list[float]]
    match: list[np.ndarray]

    @classmethod
    def load(cls, path: Path) -> Replay:
        """The replay saved beside acceptance profile ``path`` (``.per_k.json`` and
        ``.match.npz``; a missing match file gives no tree replay)."""
        per_k = json.loads(path.with_suffix(".per_k.json").read_text())
        match: list[np.ndarray] = []
        match_path = path.with_suffix(".match.npz")
        if match_path.is_file():
            with np.load(match_path) as z:
                match = np.split(z["ranks"], np.cumsum(z["lengths"])[:-1])
        return cls({int(k): v for k, v in per_k.items()}, match)


def for_tree(
    rs: ResolvedScenario, drafter: str, tree: Tree, replays: dict[str, Replay]
) -> ResolvedScenario:
    """``rs`` with ``drafter``'s ranked acceptance as a ``tree`` engine visits it (when the
    per-start ranks were measured) and the spec pinned to that tree's paths, so the
    prediction prices the very tree the live engine ran."""
    out = rs.with_spec(tree={"paths": tree.paths()}, num_spec_tokens=0)
    replay = replays.get(drafter)
    if replay is None or not replay.match:
        return out
    rd = out.drafters[drafter]
    acc = rd.acceptance.model_copy(update={"ranked": replay_tree(replay.match, tree).ranked()})
    drafters = {**out.drafters, drafter: ResolvedDrafter(rd.spec, acc, rd.latency)}
    return replace(out, drafters=drafters)


def for_chain(
    rs: ResolvedScenario, drafter: str, k: int, replays: dict[str, Replay]
) -> ResolvedScenario:
    """``rs`` with ``drafter``'s per-position acceptance replayed at chain length ``k``
    (when measured), since the steps an engine visits depend on ``k``."""
    replay = replays.get(drafter)
    vec = replay.per_k.get(k) if replay is not None else None
    if vec is None:
        return rs
    rd = rs.drafters[drafter]
    acc = rd.acceptance.model_copy(update={"per_position": vec})
    drafters = {**rs.drafters, drafter: ResolvedDrafter(rd.spec, acc, rd.latency)}
    return replace(rs, drafters=drafters)
