"""Acceptance profiler: teacher-forced T=0 acceptance equals what live chain speculation
counts; eps=0 self drafting accepts everything; the profile validates; CLI bad input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spectune.cli import main  # noqa: E402
from spectune.profiler.measure.acceptance import (  # noqa: E402
    DrafterSpec,
    build_profile,
    measure_acceptance,
    per_position,
    ranked,
    replay_chain,
)
from spectune.profiler.native.drafters import ModelDrafter, NgramDrafter  # noqa: E402
from spectune.profiler.native.engine import SpecEngine  # noqa: E402
from spectune.profiler.native.generate import generate  # noqa: E402
from spectune.profiler.runtime.checkpoint import save_checkpoint  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import controllable_pair, random_model  # noqa: E402
from spectune.simulator.schema import dump_yaml, load_acceptance_profile  # noqa: E402

CFG = ModelConfig(
    vocab_size=48,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
K = 4
NEW = 30


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: a second intra-op thread only adds synchronisation, and on a loaded
    # machine a descheduled thread stalls every op.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _prompts(n: int = 5, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # Repeated chunks give the n-gram drafter something to find.
    out = []
    for _ in range(n):
        base = rng.integers(0, CFG.vocab_size, size=int(rng.integers(3, 8))).tolist()
        out.append((base * 3)[: int(rng.integers(5, 20))])
    return out


def _engine_counts(target, drafter, prompts):
    eng = SpecEngine(target, drafter, k=K, max_batch=8, max_len=64)
    res = generate(eng, prompts, NEW)
    return res


@pytest.mark.parametrize("kind", ["self", "ngram", "draft_model"])
def test_teacher_forced_counts_equal_live_greedy_speculation(kind):
    target = controllable_pair(CFG, eps=0.3, draft_layers=2, seed=1)
    prompts = _prompts()
    if kind == "self":
        spec = DrafterSpec(kind="self", name="self-2", self_layers=2)
        drafter = ModelDrafter(target, num_layers=2)
    elif kind == "ngram":
        spec = DrafterSpec(kind="ngram", name="ngram")
        drafter = NgramDrafter()
    else:
        small = random_model(
            ModelConfig(**{**CFG.__dict__, "num_hidden_layers": 1, "rope_scaling": None}), seed=5
        )
        spec = DrafterSpec(kind="draft_model", name="small", model=small)
        drafter = ModelDrafter(small)
    reqs, seqs = measure_acceptance(target, spec, prompts, 0.0, k=K, width=4, max_new_tokens=NEW)
    live = _engine_counts(target, drafter, prompts)
    # The trajectories are the target's greedy output, which greedy SD reproduces.
    assert [list(p) + o for p, o in zip(prompts, live.outputs, strict=True)] == seqs
    drafts = accepted = 0
    per_pos = np.zeros(K, dtype=int)
    for r in reqs:
        _, d, a, pp = replay_chain(r, K)
        drafts, accepted, per_pos = drafts + d, accepted + a, per_pos + np.array(pp)
    assert drafts == live.stats.num_draft_tokens
    assert accepted == live.stats.num_accepted_tokens
    assert per_pos.tolist() == live.stats.accepted_per_position
    assert 0 < accepted < drafts  # the comparison means something


def _reference_per_position(target, spec, seqs, prompts) -> list[float]:
    """Straightforward a_i: from every start, draft k tokens one by one with the drafter's
    own argmax and count the agreement run with the target's trajectory."""
    hits, tries = np.zeros(K), np.zeros(K)
    for seq, prompt in zip(seqs, prompts, strict=True):
        for s in range(len(prompt) + 1, len(seq)):
            ctx = list(seq[:s])
            for i in range(K):
                if s + i >= len(seq):
                    break
                logits = target(torch.tensor([ctx]), num_layers=spec.self_layers)[0, -1]
                tok = int(logits.argmax())
                tries[i] += 1
                if tok != seq[s + i]:
                    break
                hits[i] += 1
                ctx.append(tok)
    return (hits / tries).tolist()


def test_per_position_matches_step_by_step_reference():
    target = controllable_pair(CFG, eps=0.5, draft_layers=2, seed=2)
    spec = DrafterSpec(kind="self", name="self-2", self_layers=2)
    prompts = _prompts(3, seed=3)
    reqs, seqs = measure_acceptance(target, spec, prompts, 0.0, k=K, width=4, max_new_tokens=20)
    with torch.inference_mode():
        ref = _reference_per_position(target, spec, seqs, prompts)
    assert per_position(reqs) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_self_drafter_eps0_accepts_everything(temperature):
    target = controllable_pair(CFG, eps=0.0, draft_layers=2, seed=1)
    spec = DrafterSpec(kind="self", name="self-2", self_layers=2)
    reqs, _ = measure_acceptance(
        target, spec, _prompts(3), temperature, k=K, width=4, max_new_tokens=20
    )
    assert per_position(reqs) == pytest.approx([1.0] * K, abs=1e-5)
    if temperature == 0:  # (at T > 0 the top candidate is a point mass, accepted w.p. p(x))
        assert ranked(reqs)[0] == 1.0
    prof = build_profile(reqs, "t", spec, "d", temperature, K, "test")
    assert prof.acceptance.spread == pytest.approx(0.0, abs=1e-4)


def test_sampled_acceptance_lower_for_worse_drafter_and_bounded():
    spec = DrafterSpec(kind="self", name="self-2", self_layers=2)
    rates = []
    for eps in (0.05, 0.5):
        target = controllable_pair(CFG, eps=eps, draft_layers=2, seed=1)
        reqs, _ = measure_acceptance(
            target, spec, _prompts(3), 1.0, k=K, width=4, max_new_tokens=20
        )
        a = per_position(reqs)
        assert all(0.0 <= x <= 1.0 for x in a + ranked(reqs))
        rates.append(a[0])
    assert rates[0] > rates[1]


def test_profile_roundtrips_through_schema(tmp_path):
    target = controllable_pair(CFG, eps=0.2, draft_layers=2, seed=1)
    spec = DrafterSpec(kind="ngram", name="ngram")
    reqs, _ = measure_acceptance(target, spec, _prompts(), 0.0, k=8, width=8, max_new_tokens=NEW)
    prof = build_profile(reqs, "tiny", spec, "synthetic", 0.0, 8, "test")
    out = tmp_path / "a.yaml"
    dump_yaml(prof, out)
    back = load_acceptance_profile(out)
    assert back == prof
    assert len(back.acceptance.per_position) == 8 and len(back.acceptance.ranked) == 8
    assert back.counts.num_requests == 5 and len(back.acceptance.per_request) == 5


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def byte_ckpt(tmp_path):
    cfg = ModelConfig(**{**CFG.__dict__, "vocab_size": 256, "rope_scaling": None})
    d = tmp_path / "tgt"
    save_checkpoint(random_model(cfg, seed=0), d)
    import json

    c = json.loads((d / "config.json").read_text())
    c["spectune_tokenizer"] = "bytes"
    (d / "config.json").write_text(json.dumps(c))
    return d


def test_cli_writes_profile(tmp_path, byte_ckpt, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("def f(x):\n    return x\n---\nclass A:\n    pass\n")
    out = tmp_path / "acc.yaml"
    rc = main(
        ["profile", "acceptance", "--target", str(byte_ckpt), "--drafter", "self:1",
         "--prompts", str(prompts), "--max-new-tokens", "12", "--k", "3", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    prof = load_acceptance_profile(out)
    assert prof.drafter_kind == "self" and prof.counts.num_requests == 2
    assert len(prof.acceptance.per_position) == 3


@pytest.mark.parametrize(
    "case, needle",
    [
        ("empty", "holds no prompt"),
        ("missing_target", "checkpoint directory not found"),
        ("bad_self", "self:N needs"),
        ("missing_prompts", "file not found"),
        ("bad_k", "--k"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, byte_ckpt, capsys, case, needle):
    prompts = tmp_path / "p.txt"
    prompts.write_text("" if case == "empty" else "x = 1\n")
    args = ["profile", "acceptance", "--target", str(byte_ckpt), "--drafter", "ngram",
            "--prompts", str(prompts), "--out", str(tmp_path / "o.yaml")]  # fmt: skip
    if case == "missing_target":
        args[3] = str(tmp_path / "nope")
    elif case == "bad_self":
        args[5] = "self:9"
    elif case == "missing_prompts":
        args[7] = str(tmp_path / "nope.txt")
    elif case == "bad_k":
        args += ["--k", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("kind", ["ngram", "draft_model"])
def test_tree_replay_equals_live_greedy_tree(kind):
    """The tree replay (per-start ranks from the teacher-forced profile, as the simulator
    and the validation replay them) counts exactly the drafts a live greedy tree engine
    accepts."""
    from spectune.profiler.measure.trajectories import match_rows
    from spectune.simulator.trajectory import replay_tree
    from spectune.simulator.tree import Tree

    target = controllable_pair(CFG, eps=0.3, draft_layers=2, seed=1)
    prompts = _prompts(6, seed=3)
    if kind == "ngram":
        spec = DrafterSpec(kind="ngram", name="ngram")
        drafter = NgramDrafter()
    else:
        spec = DrafterSpec(kind="draft_model", name="first-2", model=target.first_layers(2))
        drafter = ModelDrafter(target.first_layers(2))
    tree = Tree.from_paths([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [2]])
    # Trajectories 3 tokens (the tree's depth) longer than the live run: a tree step near
    # the end is not capped, so the engine checks drafts past its last kept token.
    reqs, seqs = measure_acceptance(
        target, spec, prompts, 0.0, k=K, width=4, max_new_tokens=NEW + 3
    )
    live = generate(SpecEngine(target, drafter, tree=tree, max_batch=8, max_len=64), prompts, NEW)
    assert [list(p) + o for p, o in zip(prompts, live.outputs, strict=True)] == [
        s[: len(p) + NEW] for p, s in zip(prompts, seqs, strict=True)
    ]
    v = replay_tree([match_rows(r) for r in reqs], tree, end=NEW)
    assert v.steps == live.stats.num_seq_steps
    assert v.accepted_tokens == live.stats.num_accepted_tokens
    assert 0 < v.accepted_tokens < v.checked_by_rank.sum()  # the comparison means something
    assert v.accepted_by_rank[1] > 0  # a non-top candidate was accepted somewhere
