"""Mean accepted length predicted from per-request trajectories vs measured live, on
held-out prompts (a program, not a test).

Calibration and scoring never share a prompt: the held-out stdlib files (the demo models
never trained on them) are split by file, even-numbered files give the calibration
prompts, odd-numbered ones the scored prompts (code snippets starting at a ``def`` /
``class`` line, <= 320 bytes, as examples/prompts/stdlib.txt). Both decode greedily in
fp32 with ``--new-tokens`` tokens. The calibration records reach ``--extra-tokens`` past
that: a tree step near a request's end checks drafts past its last kept token (the live
engine and vLLM both do), so a tree's record must reach past the request it models; a
chain step of spectune's live engine never drafts past the request's last token (vLLM's
does, and cuts the output), so chains replay the records cut at the request's length.

1. Calibration: ``measure_acceptance`` (teacher forcing, exact at T = 0) on the
   calibration prompts -> an acceptance profile with one trajectory per prompt.
2. Predictions, each a DES run (``simulate``) of ``--sim-requests`` offline requests of
   the scored prompts' lengths at the config's k or tree:
   (a) trajectories: the profile as measured, each simulated request replaying one
       calibration record;
   (b) vectors + spread: the same profile without its trajectories (per_position over every
       start, ranked, per-request spread: the compact form);
   plus the closed form of the trajectories' pooled statistics, and (oracle) the DES
   replaying the *scored* prompts' own trajectories: what is left between the oracle and
   live is the simulator's error, between (a) and the oracle the prompts' sampling.
3. Measured: spectune's live engine (``SpecEngine``, batch ``--batch``) on the scored
   prompts; its counters' mean accepted length (1 + accepted / drafts, vLLM's).

Configs: the demo drafter's chains k = 1..8 and the shipped trees (the optimal trees of
the shipped profile's ranked acceptance at budget/depth 4/2, 8/3, 12/4, as
docs/validation runs them); ``--ngram`` adds n-gram chains k = 1..8 and its 6/3 tree.
Target: |(a) − measured| / measured <= 2%.

    .venv/bin/python benchmarks/bench_acceptance_live.py [--prompts 256] [--ngram]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
TREES = {"byte-drafter": ((4, 2), (8, 3), (12, 4)), "ngram": ((6, 3),)}
SHIPPED = {
    "byte-drafter": REPO / "acceptance/stdlib-byte-target__stdlib-byte-drafter__stdlib__t0.yaml",
    "ngram": REPO / "acceptance/stdlib-byte-target__ngram__stdlib__t0.yaml",
}


def split_prompts(n: int, max_bytes: int = 320) -> tuple[list[str], list[str]]:
    """(calibration, scored) snippets from disjoint held-out stdlib files."""
    from spectune.profiler.demo.corpus import load_corpus, stdlib_root

    corpus = load_corpus()
    root = Path(corpus.root) if corpus.root else stdlib_root()
    sets: tuple[list[str], list[str]] = ([], [])
    for i, rel in enumerate(corpus.heldout_files):
        text = (root / rel).read_bytes().decode("utf-8", errors="replace")
        heads = ("def ", "class ", "    def ")
        starts = [
            j
            for j in range(len(text))
            if (j == 0 or text[j - 1] == "\n") and text.startswith(heads, j)
        ]
        for j in starts:
            chunk = text[j : j + max_bytes]
            cut = chunk.rfind("\n")
            if cut > 40:
                sets[i % 2].append(chunk[: cut + 1])
    rng = np.random.default_rng(0)
    pick = [rng.permutation(len(s))[:n] for s in sets]
    return [sets[0][i] for i in pick[0]], [sets[1][i] for i in pick[1]]


def cut_records(profile, output_tokens: int):
    """The profile with its positions records cut at ``output_tokens``: what recording at
    the request's own length gives (runs end at the last token)."""
    from spectune.simulator.trajectory_schema import Trajectory

    n = output_tokens - 1
    cut = [
        Trajectory(
            form="positions",
            k=t.k,
            output_tokens=output_tokens,
            accepted=[min(a, output_tokens - (i + 1)) for i, a in enumerate(t.accepted[:n])],
            drafted=None if t.drafted is None else t.drafted[:n],
            rank=None if t.rank is None else t.rank[:n],
        )
        for t in profile.acceptance.trajectories
    ]
    acc = profile.acceptance.model_copy(update={"trajectories": cut})
    return profile.model_copy(update={"acceptance": acc})


def scenario(profile: Path, kind: str, prompt_len: int, new_tokens: int, requests: int):
    from spectune.simulator.scenario import resolve_scenario
    from spectune.simulator.schema import Scenario, validate_model

    drafter = {"name": "d", "kind": kind, "acceptance": {"profile": str(profile)}}
    if kind == "draft_model":
        drafter["latency_profile"] = "hwprofiles/cpu-amd-epyc-1t/stdlib-byte-drafter.yaml"
    data = {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "hwprofiles/cpu-amd-epyc-1t/stdlib-byte-target.yaml"},
        "drafters": [drafter],
        "workload": {
            "mode": "offline",
            "num_requests": requests,
            "prompt_tokens": {"dist": "constant", "value": prompt_len},
            "output_tokens": {"dist": "constant", "value": new_tokens},
        },
        "serving": {"max_num_seqs": 64, "kv_cache_tokens": 1_000_000},
        "spec": {"drafter": "d", "num_spec_tokens": 1},
    }
    sc = validate_model(Scenario, data, "bench")
    return resolve_scenario(sc, base_dir=REPO, source="bench")


def predicted(rs, k: int | None, tree, seed: int = 0) -> tuple[float, float]:
    """(DES mean accepted length, closed form of the model the DES built)."""
    from spectune.simulator import simulate
    from spectune.simulator.acceptance import AcceptanceModel

    if tree is None:
        run = rs.with_spec(num_spec_tokens=k, tree=None)
        model = AcceptanceModel.for_chain(rs.drafters["d"].acceptance, k)
    else:
        run = rs.with_spec(num_spec_tokens=0, tree={"paths": tree.paths()})
        model = AcceptanceModel.for_tree(rs.drafters["d"].acceptance, tree)
    m = simulate(run, seed).metrics
    return float(m["mean_accepted_len"]), model.mean_tokens_per_step()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=256, help="scored (and calibration) prompts")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--extra-tokens", type=int, default=8, help="recorded past the end")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sim-requests", type=int, default=4096)
    ap.add_argument("--ngram", action="store_true", help="also n-gram chains and tree")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from spectune.profiler.measure.acceptance import DrafterSpec, build_profile, measure_acceptance
    from spectune.profiler.native.drafters import ModelDrafter, NgramDrafter
    from spectune.profiler.native.engine import SpecEngine
    from spectune.profiler.native.generate import generate
    from spectune.profiler.runtime.specs import load_model
    from spectune.simulator.analytic import optimal_tree
    from spectune.simulator.schema import dump_yaml, load_acceptance_profile
    from spectune.simulator.tree import Tree

    t0 = time.perf_counter()
    cal_txt, eval_txt = split_prompts(args.prompts)
    cal = [list(t.encode()) for t in cal_txt]
    scored = [list(t.encode()) for t in eval_txt]
    target = load_model(REPO / "models/stdlib-byte-target", dtype="fp32").model
    dmodel = load_model(REPO / "models/stdlib-byte-drafter", dtype="fp32").model
    drafters = {
        "byte-drafter": (DrafterSpec("draft_model", "byte-drafter", model=dmodel), "draft_model"),
    }
    if args.ngram:
        drafters["ngram"] = (DrafterSpec("ngram", "ngram", ngram_max_n=3), "ngram")
    make = {"byte-drafter": lambda: ModelDrafter(dmodel), "ngram": lambda: NgramDrafter(1, 3)}
    work = Path(tempfile.mkdtemp(prefix="bench_acc_"))
    prompt_len = int(np.mean([len(p) for p in scored]))
    recorded = args.new_tokens + args.extra_tokens
    print(
        f"calibration {len(cal)} prompts, scored {len(scored)} prompts (disjoint held-out stdlib "
        f"files), {args.new_tokens} greedy tokens, fp32, live batch {args.batch}, "
        f"{args.sim_requests} simulated requests per prediction, torch threads {args.threads}"
    )
    rows = []
    for name, (spec, kind) in drafters.items():
        with torch.inference_mode():
            reqs, _ = measure_acceptance(target, spec, cal, 0.0, 8, 8, recorded)
        prof = build_profile(reqs, "stdlib-byte-target", spec, "calibration", 0.0, 8, "bench")
        full, compact = work / f"{name}.yaml", work / f"{name}-compact.yaml"
        dump_yaml(prof, full)
        bare = prof.acceptance.model_copy(update={"trajectories": None})
        dump_yaml(prof.model_copy(update={"acceptance": bare}), compact)
        with torch.inference_mode():
            sreqs, _ = measure_acceptance(target, spec, scored, 0.0, 8, 8, recorded)
        oracle_path = work / f"{name}-scored.yaml"
        dump_yaml(build_profile(sreqs, "t", spec, "scored", 0.0, 8, "oracle"), oracle_path)
        rs_oracle = scenario(oracle_path, kind, prompt_len, args.new_tokens, args.sim_requests)
        rs_full = scenario(full, kind, prompt_len, args.new_tokens, args.sim_requests)
        cut = work / f"{name}-cut.yaml"
        dump_yaml(cut_records(prof, args.new_tokens), cut)
        rs_cut = scenario(cut, kind, prompt_len, args.new_tokens, args.sim_requests)
        oracle_cut = work / f"{name}-scored-cut.yaml"
        dump_yaml(cut_records(load_acceptance_profile(oracle_path), args.new_tokens), oracle_cut)
        rs_oracle_cut = scenario(oracle_cut, kind, prompt_len, args.new_tokens, args.sim_requests)
        rs_compact = scenario(compact, kind, prompt_len, args.new_tokens, args.sim_requests)
        ranked = load_acceptance_profile(SHIPPED[name]).acceptance.ranked
        shapes = [(f"k={k}", k, None) for k in range(1, 9)]
        shapes += [(f"tree {b}/{d}", None, optimal_tree(ranked, b, d)) for b, d in TREES[name]]
        for label, k, tree in shapes:
            chain = tree is None
            traj, closed = predicted(rs_cut if chain else rs_full, k, tree)
            vec, _ = predicted(rs_compact, k, tree)
            oracle, _ = predicted(rs_oracle_cut if chain else rs_oracle, k, tree)
            spec_kw = {"k": k} if tree is None else {"tree": Tree.from_paths(tree.paths())}
            eng = SpecEngine(
                target, make[name](), max_batch=args.batch, max_len=512 + args.new_tokens, **spec_kw
            )
            with torch.inference_mode():
                live = generate(eng, scored, args.new_tokens).stats.mean_accepted_len
            rows.append((name, label, live, traj, closed, vec, oracle))
            print(f"  {name} {label}: live {live:.3f}", file=sys.stderr, flush=True)

    print(
        f"\n{'drafter':<13}{'config':<11}{'live':>7}{'traj.':>8}{'err':>7}"
        f"{'pooled':>8}{'err':>7}{'vec+spr':>9}{'err':>7}{'oracle':>8}{'err':>7}"
    )
    errs: dict[str, list[float]] = {"traj": [], "pooled": [], "vec": [], "oracle": []}
    for name, label, live, *pred in rows:
        e = [100 * (x - live) / live for x in pred]
        for key, x in zip(errs, e, strict=True):
            errs[key].append(abs(x))
        widths = (8, 8, 9, 8)
        cells = "".join(f"{x:{w}.3f}{y:+6.1f}%" for x, y, w in zip(pred, e, widths, strict=True))
        print(f"{name:<13}{label:<11}{live:7.3f}{cells}")
    print(
        "\nmean |error|: trajectories (DES) {:.2f}%, max {:.2f}%; pooled closed form {:.2f}%; "
        "vectors + spread (DES) {:.2f}%, max {:.2f}%; oracle (scored prompts' own "
        "trajectories) {:.2f}%, max {:.2f}%".format(
            np.mean(errs["traj"]),
            max(errs["traj"]),
            np.mean(errs["pooled"]),
            np.mean(errs["vec"]),
            max(errs["vec"]),
            np.mean(errs["oracle"]),
            max(errs["oracle"]),
        )
    )
    within = sum(x <= 2.0 for x in errs["traj"])
    print(f"trajectories within 2%: {within} of {len(rows)} configs (target: all)")
    print(f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
