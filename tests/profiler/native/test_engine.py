"""The live SD engine: losslessness, ragged rollback, sampling fidelity, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from spectune.profiler.native.drafters import (  # noqa: E402
    ChainDraft,
    DraftContext,
    Drafter,
    ModelDrafter,
    NgramDrafter,
    TreeDraft,
)
from spectune.profiler.native.engine import CapacityError, SpecEngine  # noqa: E402
from spectune.profiler.native.generate import generate  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import controllable_pair, random_model  # noqa: E402
from spectune.simulator.errors import InputError  # noqa: E402
from spectune.simulator.tree import Tree  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models are dispatch-bound; on a busy 2-core machine two intra-op threads make
    # each small matmul ~100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


VOCAB = 64
CFG = ModelConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)
DRAFT_LAYERS = 2
NEW_TOKENS = 24
TREE = Tree.from_paths([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]])


@pytest.fixture(scope="module")
def target():
    # eps 0.3: the first two layers agree with the target on ~2/3 of greedy tokens.
    return controllable_pair(CFG, eps=0.3, draft_layers=DRAFT_LAYERS, seed=0)


def _prompts(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=n)
    out = [rng.integers(0, VOCAB, size=int(n_)).tolist() for n_ in lengths]
    # One prompt with repeats so that n-gram lookup finds matches from the start.
    out[0] = ([3, 4, 5, 6] * 6)[: max(len(out[0]), 8)]
    return out


@pytest.fixture(scope="module")
def prompts9():
    return _prompts(9)


@pytest.fixture(scope="module")
def baseline(target, prompts9):
    """Plain greedy decoding (k = 0) of the prompts, one at a time."""
    outs = []
    for p in prompts9:
        eng = SpecEngine(target, None, max_batch=1, max_len=96)
        outs.append(generate(eng, [p], NEW_TOKENS).outputs[0])
    return outs


def _make_drafter(kind: str, target) -> Drafter:
    if kind == "draft_model":
        return ModelDrafter(target.first_layers(DRAFT_LAYERS))  # own model object + cache
    if kind == "self":
        return ModelDrafter(target, DRAFT_LAYERS, share_target_cache=True)
    if kind == "self_own_cache":
        return ModelDrafter(target, DRAFT_LAYERS)
    return NgramDrafter(1, 3)


KINDS = ["draft_model", "self", "self_own_cache", "ngram"]


def test_plain_decoding_matches_manual_greedy_loop(target, prompts9, baseline):
    """The k = 0 baseline equals a cache-free argmax loop over the full sequence."""
    for p, out in zip(prompts9[:3], baseline[:3], strict=True):
        seq = list(p)
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = target(torch.tensor([seq]))
                seq.append(int(logits[0, -1].argmax()))
        assert seq[len(p) :] == out


@pytest.mark.parametrize(
    ("kind", "shape", "batch"),
    list(itertools.product(KINDS, ["chain", "tree"], [1, 9])),
)
def test_greedy_sd_is_lossless(target, prompts9, baseline, kind, shape, batch):
    spec = {"k": 3} if shape == "chain" else {"tree": TREE}
    if batch == 1:
        outs = []
        for p in prompts9[:3]:
            eng = SpecEngine(target, _make_drafter(kind, target), max_batch=1, max_len=96, **spec)
            outs.append(generate(eng, [p], NEW_TOKENS).outputs[0])
        assert outs == baseline[:3]
        return
    eng = SpecEngine(target, _make_drafter(kind, target), max_batch=batch, max_len=96, **spec)
    res = generate(eng, prompts9, NEW_TOKENS)
    assert res.outputs == baseline
    st = res.stats
    assert st.num_generated_tokens == 9 * NEW_TOKENS
    if kind != "ngram":  # the pair is built so that acceptance is neither 0 nor 1
        assert 0 < st.num_accepted_tokens < st.num_draft_tokens
        assert 1.0 < st.mean_accepted_len < 1 + TREE.max_depth
    assert st.mean_accepted_len == pytest.approx(1 + st.num_accepted_tokens / st.num_drafts)


def test_continuous_batching_and_eos(target, prompts9, baseline):
    """Fewer slots than prompts (slots are compacted as requests finish) and an EOS stop."""
    eos = baseline[2][5]
    expect = [o[: o.index(eos) + 1] if eos in o else o for o in baseline]
    assert any(len(e) < NEW_TOKENS for e in expect)
    eng = SpecEngine(
        target,
        _make_drafter("self_own_cache", target),
        k=4,
        max_batch=3,
        max_len=96,
        eos_token_id=eos,
    )
    res = generate(eng, prompts9, NEW_TOKENS)
    assert res.outputs == expect
    assert max(s.batch_size for s in res.steps) == 3 and not eng.has_unfinished()


def test_add_remove_between_steps(target, prompts9, baseline):
    """A serving driver adds and aborts requests between steps."""
    eng = SpecEngine(target, _make_drafter("draft_model", target), k=3, max_batch=4, max_len=96)
    got: dict[int, list[int]] = {}
    eng.add(0, prompts9[0], NEW_TOKENS)
    eng.add(1, prompts9[1], NEW_TOKENS)
    eng.add(99, prompts9[4], NEW_TOKENS)
    for step in range(200):
        if step == 2:
            eng.add(2, prompts9[2], NEW_TOKENS)
            eng.abort(99)
        if step == 3:
            eng.add(3, prompts9[3], NEW_TOKENS)
        if not eng.has_unfinished():
            break
        res = eng.step()
        for rid, toks in res.new_tokens.items():
            got.setdefault(rid, []).extend(toks)
    assert {r: got[r] for r in range(4)} == {r: baseline[r] for r in range(4)}
    assert len(got[99]) < NEW_TOKENS


class OracleDrafter(Drafter):
    """Proposes the target's own greedy continuation for even requests, wrong tokens for
    odd ones (every draft of an odd request differs from the target's token)."""

    kind = "stub"

    def __init__(self, prompts, outputs, good):
        self.refs = [list(p) + list(o) for p, o in zip(prompts, outputs, strict=True)]
        self.good = good

    def _ref(self, seq: np.ndarray) -> int:
        for i, ref in enumerate(self.refs):
            if len(ref) >= len(seq) and ref[: len(seq)] == seq.tolist():
                return i
        raise AssertionError("context off the greedy trajectory")

    def propose_chain(self, ctx: DraftContext, max_drafts: np.ndarray) -> ChainDraft:
        k = int(max_drafts.max())
        out = np.zeros((len(ctx.seqs), k), dtype=np.int64)
        for b, seq in enumerate(ctx.seqs):
            i = self._ref(seq)
            cont = (self.refs[i] + [0] * k)[len(seq) : len(seq) + k]
            out[b] = cont if self.good(i) else [(t + 1) % VOCAB for t in cont]
        return ChainDraft(torch.from_numpy(out), torch.from_numpy(max_drafts.astype(np.int64)))

    def propose_tree(self, ctx: DraftContext, tree: Tree) -> TreeDraft:
        raise NotImplementedError


def test_ragged_rollback_zero_and_all_accepted_in_one_step(target, prompts9, baseline):
    k = 4
    good = lambda i: i % 2 == 0
    drafter = OracleDrafter(prompts9, baseline, good)
    eng = SpecEngine(target, drafter, k=k, max_batch=9, max_len=96)
    for i, p in enumerate(prompts9):
        eng.add(i, p, NEW_TOKENS)
    got: dict[int, list[int]] = {}
    mixed_steps = 0
    while eng.has_unfinished():
        remaining = {i: NEW_TOKENS - len(got.get(i, [])) for i in range(9)}
        res = eng.step()
        for rid, toks in res.new_tokens.items():
            got.setdefault(rid, []).extend(toks)
        # The target's cache holds every token but the root, per sequence.
        lengths = eng.cache.lengths[: eng.num_running].tolist()
        assert lengths == [s.length - 1 for s in eng._running]
        if res.batch_size == 9 and min(remaining.values()) > k:
            # Even requests accept all k drafts (+ bonus), odd ones none, in the same step.
            n_new = {rid: len(t) for rid, t in res.new_tokens.items()}
            assert n_new == {i: k + 1 if good(i) else 1 for i in range(9)}
            assert res.num_accepted_tokens == 5 * k
            assert res.accepted_per_position == [5] * k
            mixed_steps += 1
    assert mixed_steps >= 3
    assert [got[i] for i in range(9)] == baseline


# ---------------------------------------------------------------------- sampling


SMALL = ModelConfig(
    vocab_size=4,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
)


def _exact_joint(model, prompt: list[int], n_tokens: int, temperature: float) -> np.ndarray:
    """P(t1..tn | prompt) of plain sampling, over all V^n continuations, flattened."""
    vocab = model.config.vocab_size
    conts = list(itertools.product(range(vocab), repeat=n_tokens - 1))
    seqs = torch.tensor([prompt + list(c) for c in conts])
    with torch.no_grad():
        logp = torch.log_softmax(model(seqs).double() / temperature, dim=-1)  # [C, L, V]
    start = len(prompt) - 1
    joint = np.zeros([vocab] * n_tokens)
    for ci, c in enumerate(conts):
        lp = logp[ci, start + np.arange(n_tokens - 1), list(c)].sum().item()
        joint[c] = np.exp(lp + logp[ci, start + n_tokens - 1].numpy())
    return joint.reshape(-1)


def _chi2(observed: np.ndarray, expected_p: np.ndarray) -> float:
    exp = expected_p * observed.sum()
    small = exp < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(exp[~small], exp[small].sum())
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("shape", ["chain", "tree"])
def test_sampled_sd_matches_target_distribution(shape):
    """4-token outputs of sampled SD follow the target's joint distribution (chi-square
    over all 4^4 continuations, 6000 independent requests)."""
    temperature, n_req, n_tok = 1.3, 6000, 4
    target = random_model(SMALL, seed=11, initializer_range=0.5)
    prompt = [1, 2, 3, 0, 2]
    if shape == "chain":  # an unrelated draft model: q differs from p everywhere
        drafter = ModelDrafter(random_model(SMALL, seed=12, initializer_range=0.5))
        spec = {"k": 3}
    else:  # top-ranked candidates of the target's first layer, as a tree
        drafter = ModelDrafter(target, 1, share_target_cache=True)
        spec = {"tree": Tree.from_paths([[0], [1], [0, 0], [1, 0], [0, 0, 0]])}
    eng = SpecEngine(
        target, drafter, temperature=temperature, seed=3, max_batch=1500, max_len=16, **spec
    )
    res = generate(eng, [prompt] * n_req, n_tok)
    idx = np.array([np.ravel_multi_index(o, [4] * n_tok) for o in res.outputs])
    observed = np.bincount(idx, minlength=4**n_tok)
    expected = _exact_joint(target, prompt, n_tok, temperature)
    assert expected.sum() == pytest.approx(1.0)
    assert 0 < res.stats.num_accepted_tokens < res.stats.num_draft_tokens
    assert _chi2(observed, expected) > 1e-3
    # The check has power: the drafter's own distribution is rejected.
    if shape == "chain":
        wrong = _exact_joint(drafter.model, prompt, n_tok, temperature)
        assert _chi2(observed, wrong) < 1e-6


# ---------------------------------------------------------------------- bad input


def test_bad_inputs(target):
    with pytest.raises(InputError, match="k must be >= 0"):
        SpecEngine(target, NgramDrafter(), k=-1)
    with pytest.raises(InputError, match="needs a drafter"):
        SpecEngine(target, None, k=2)
    other = random_model(
        ModelConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        ),
        seed=0,
    )
    with pytest.raises(InputError, match="vocab_size 32 != target vocab_size 64"):
        SpecEngine(target, ModelDrafter(other), k=2)
    eng = SpecEngine(target, NgramDrafter(), k=2, max_batch=2, max_len=32)
    with pytest.raises(InputError, match="empty prompt"):
        eng.add("a", [], 4)
    with pytest.raises(InputError, match=r"token ids must be in \[0, 64\)"):
        eng.add("a", [1, 64], 4)
    with pytest.raises(InputError, match="max_len 32"):
        eng.add("a", [1] * 20, 20)
    with pytest.raises(InputError, match="max_new_tokens must be >= 1"):
        eng.add("a", [1], 0)
    eng.add("a", [1, 2], 4)
    with pytest.raises(InputError, match="already in the engine"):
        eng.add("a", [1, 2], 4)
    eng.add("b", [1, 2], 4)
    with pytest.raises(CapacityError):
        eng.add("c", [1, 2], 4)
