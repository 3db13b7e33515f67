"""Verification maths: exact greedy cases and statistical tests of speculative sampling."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from spectune.profiler.native.sampling import (  # noqa: E402
    greedy_verify_chain,
    greedy_verify_tree,
    make_generator,
    probs_from_logits,
    sample_verify_chain,
    sample_verify_tree,
)

T = torch.tensor


# ---------------------------------------------------------------------- greedy chains


def test_greedy_chain_accepts_prefix_and_takes_next_argmax():
    drafts = T([[5, 6, 7], [5, 6, 7], [1, 6, 7], [5, 6, 7]])
    argmax = T([[5, 6, 7, 9], [5, 6, 0, 9], [5, 6, 7, 9], [5, 6, 7, 9]])
    num = T([3, 3, 3, 1])
    v = greedy_verify_chain(drafts, argmax, num)
    assert v.num_accepted.tolist() == [3, 2, 0, 1]
    # all accepted -> bonus argmax[3]; rejection at j -> recovered argmax[j];
    # num_drafts=1 stops at position 1 even though later drafts would match.
    assert v.next_tokens.tolist() == [9, 0, 5, 6]
    assert v.output_tokens(drafts) == [[5, 6, 7, 9], [5, 6, 0], [5], [5, 6]]


def test_greedy_chain_with_no_drafts_is_plain_decoding():
    v = greedy_verify_chain(torch.zeros((2, 0), dtype=torch.long), T([[3], [4]]), T([0, 0]))
    assert v.num_accepted.tolist() == [0, 0]
    assert v.next_tokens.tolist() == [3, 4]


# ---------------------------------------------------------------------- greedy trees

# root -> a(0), b(1); a -> c(2), d(3); c -> e(4)
PARENTS = (-1, -1, 0, 0, 2)


def test_greedy_tree_takes_longest_agreeing_path():
    # argmax columns: root, a, b, c, d, e
    argmax = T([[10, 20, 30, 40, 50, 60]])
    # Second-ranked root child matches, its subtree is empty -> path [1].
    v = greedy_verify_tree(PARENTS, T([[11, 10, 0, 0, 0]]), argmax)
    assert v.accepted_nodes == [[1]] and v.next_tokens.tolist() == [30]
    # a matches, d (rank 1 under a) matches, c does not -> [0, 3], next = argmax after d.
    v = greedy_verify_tree(PARENTS, T([[10, 11, 99, 20, 0]]), argmax)
    assert v.accepted_nodes == [[0, 3]] and v.next_tokens.tolist() == [50]
    # Full depth: a, c, e -> bonus after e.
    v = greedy_verify_tree(PARENTS, T([[10, 11, 20, 21, 40]]), argmax)
    assert v.accepted_nodes == [[0, 2, 4]] and v.next_tokens.tolist() == [60]
    # Nothing matches -> empty path, next = argmax at the root.
    v = greedy_verify_tree(PARENTS, T([[1, 2, 3, 4, 5]]), argmax)
    assert v.accepted_nodes == [[]] and v.next_tokens.tolist() == [10]


def test_greedy_tree_prefers_deeper_duplicate_and_skips_absent():
    argmax = T([[10, 20, 30, 40, 50, 60], [10, 20, 30, 40, 50, 60]])
    # a and b both carry 10; only a has a matching child -> the deeper path wins.
    drafts = T([[10, 10, 20, 0, 0], [10, 11, 20, 0, 40]])
    present = T([[True] * 5, [True, True, False, True, True]]).bool()
    v = greedy_verify_tree(PARENTS, drafts, argmax, present)
    # Row 1: c is absent, so its matching child e is unreachable.
    assert v.accepted_nodes == [[0, 2], [0]]
    assert v.next_tokens.tolist() == [40, 20]


# ---------------------------------------------------------------------- sampling: chains


def _random_dists(gen: np.random.Generator, n: int, vocab: int, conc: float = 1.0):
    return torch.from_numpy(gen.dirichlet([conc] * vocab, size=n)).float()


def _chi2_pvalue(observed: np.ndarray, expected_p: np.ndarray) -> float:
    """Chi-square goodness of fit; cells with expected count < 5 are pooled."""
    n = observed.sum()
    exp = expected_p * n
    small = exp < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        exp = np.append(exp[~small], exp[small].sum())
    return float(stats.chisquare(observed, exp * observed.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("point_mass", [False, True])
def test_speculative_sampling_chain_keeps_target_distribution(point_mass):
    """The first two emitted tokens follow p0 and p1(.|t1), whatever q is (V=6, n=60k)."""
    vocab, n = 6, 60_000
    g_np = np.random.default_rng(1)
    p0 = _random_dists(g_np, 1, vocab)[0]
    p1 = _random_dists(g_np, vocab, vocab)  # p1[x]: target after token x
    p2 = _random_dists(g_np, vocab, vocab)  # after the second draft (depends on x2 only)
    q0 = _random_dists(g_np, 1, vocab)[0]
    q1 = _random_dists(g_np, vocab, vocab)
    gen = make_generator(0)
    x1 = torch.multinomial(q0.expand(n, vocab), 1, generator=gen).squeeze(1)
    x2 = torch.multinomial(q1[x1], 1, generator=gen).squeeze(1)
    drafts = torch.stack([x1, x2], dim=1)
    draft_probs = None if point_mass else torch.stack([q0.expand(n, vocab), q1[x1]], dim=1)
    target = torch.stack([p0.expand(n, vocab), p1[x1], p2[x2]], dim=1)
    v = sample_verify_chain(drafts, draft_probs, target, torch.full((n,), 2), gen)
    out = v.output_tokens(drafts)
    t1 = np.array([o[0] for o in out])
    assert _chi2_pvalue(np.bincount(t1, minlength=vocab), p0.numpy()) > 1e-3
    # Given t1 = x (accepted), the second token follows p1[x].
    for x in range(vocab):
        t2 = np.array([o[1] for o in out if len(o) > 1 and o[0] == x])
        if len(t2) > 500:
            assert _chi2_pvalue(np.bincount(t2, minlength=vocab), p1[x].numpy()) > 1e-3
    # The first-position acceptance rate is sum(min(p, q)) (point mass: E_q[p(x)]).
    acc = (v.num_accepted >= 1).float().mean().item()
    expect = float((p0 * q0).sum()) if point_mass else float(torch.minimum(p0, q0).sum())
    assert abs(acc - expect) < 4 * np.sqrt(expect * (1 - expect) / n)


def test_chi2_check_detects_a_wrong_sampler():
    """The statistical check can fail: emitting the draft unverified follows q, not p."""
    vocab, n = 6, 20_000
    g_np = np.random.default_rng(1)
    p0 = _random_dists(g_np, 1, vocab)[0]
    q0 = _random_dists(g_np, 1, vocab)[0]
    x1 = torch.multinomial(q0.expand(n, vocab), 1, generator=make_generator(0)).squeeze(1)
    assert _chi2_pvalue(np.bincount(x1.numpy(), minlength=vocab), p0.numpy()) < 1e-6


def test_tv_distance_shrinks_with_samples():
    """Total variation of the emitted first token vs p0 falls like 1/sqrt(n)."""
    vocab = 8
    g_np = np.random.default_rng(3)
    p0 = _random_dists(g_np, 1, vocab)[0]
    q0 = _random_dists(g_np, 1, vocab)[0]
    gen = make_generator(7)
    for n in (2_000, 50_000):
        x1 = torch.multinomial(q0.expand(n, vocab), 1, generator=gen)
        target = torch.stack([p0.expand(n, vocab), p0.expand(n, vocab)], dim=1)
        v = sample_verify_chain(x1, q0.expand(n, 1, vocab), target, torch.ones(n).long(), gen)
        first = np.array([o[0] for o in v.output_tokens(x1)])
        tv = 0.5 * np.abs(np.bincount(first, minlength=vocab) / n - p0.numpy()).sum()
        # E[TV] <= 0.5 * sum sqrt(p(1-p)/n); 3x margin.
        bound = 1.5 * float(np.sqrt(p0.numpy() * (1 - p0.numpy())).sum()) / np.sqrt(n)
        assert tv < bound


def test_bonus_token_comes_from_last_position():
    """All drafts accepted (q = p = point mass at the draft) -> bonus drawn from p[k]."""
    n, vocab = 4, 5
    drafts = T([[2, 3]] * n)
    target = torch.zeros(n, 3, vocab)
    target[:, 0, 2] = 1
    target[:, 1, 3] = 1
    target[:, 2, 4] = 1
    v = sample_verify_chain(drafts, None, target, torch.full((n,), 2), make_generator(0))
    assert v.num_accepted.tolist() == [2] * n and v.next_tokens.tolist() == [4] * n


def test_temperature_scaling():
    logits = T([[0.0, 1.0, 2.0]])
    hot = probs_from_logits(logits, 10.0)
    cold = probs_from_logits(logits, 0.1)
    assert torch.allclose(probs_from_logits(logits, 1.0), torch.softmax(logits, -1))
    assert hot.max() < 0.4 and cold[0, 2] > 0.99
    with pytest.raises(ValueError):
        probs_from_logits(logits, 0.0)


# ---------------------------------------------------------------------- sampling: trees


def test_tree_sampling_keeps_target_distribution():
    """Root children tokens 1, 2 and 1 again (duplicate), a child under the first: the
    first token follows p0 and the second follows p(.|t1) (n=20k)."""
    vocab, n = 5, 20_000
    parents = (-1, -1, -1, 0)
    g_np = np.random.default_rng(5)
    p0 = _random_dists(g_np, 1, vocab)[0]
    p_after = _random_dists(g_np, vocab, vocab)
    drafts = T([[1, 2, 1, 3]] * n)
    # Columns: root, node0 (token 1), node1 (2), node2 (1), node3 (3 after 1).
    target = torch.stack([p0, p_after[1], p_after[2], p_after[1], p_after[3]], dim=0).expand(
        n, -1, -1
    )
    v = sample_verify_tree(parents, drafts, target, make_generator(2))
    out = v.output_tokens(drafts)
    t1 = np.array([o[0] for o in out])
    assert _chi2_pvalue(np.bincount(t1, minlength=vocab), p0.numpy()) > 1e-3
    for x in range(vocab):
        t2 = np.array([o[1] for o in out if len(o) > 1 and o[0] == x])
        if len(t2) > 500:
            assert _chi2_pvalue(np.bincount(t2, minlength=vocab), p_after[x].numpy()) > 1e-3
    # The duplicate sibling (node 2) can never be accepted: token 1 was zeroed first.
    assert all(2 not in path for path in v.accepted_nodes)


# ---------------------------------------------------------------------- greedy vs brute force


def _brute_force_tree(parents, tokens, argmax, present):
    """Longest path whose every node matches the argmax at its parent (reference)."""
    best: list[int] = []
    for node in range(len(parents)):
        path, ok, cur = [], True, node
        while cur >= 0:
            path.append(cur)
            ok &= bool(present[cur]) and tokens[cur] == argmax[parents[cur] + 1]
            cur = parents[cur]
        if ok and len(path) > len(best):
            best = path[::-1]
    return best


def test_greedy_tree_matches_brute_force_on_random_trees():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        parents = tuple(int(rng.integers(-1, i)) for i in range(n))
        vocab = int(rng.integers(2, 4))  # tiny vocab: many matches and duplicate siblings
        tokens = rng.integers(0, vocab, size=(1, n))
        argmax = rng.integers(0, vocab, size=(1, n + 1))
        present = rng.random((1, n)) < 0.9
        v = greedy_verify_tree(parents, T(tokens), T(argmax), torch.from_numpy(present))
        ref = _brute_force_tree(parents, tokens[0], argmax[0], present[0])
        path = v.accepted_nodes[0]
        # As long as the reference, and a valid root-to-node path (ties may pick another).
        assert len(path) == len(ref)
        assert [parents[i] for i in path] == [-1, *path[:-1]][: len(path)]
        assert all(present[0][i] and tokens[0][i] == argmax[0][parents[i] + 1] for i in path)
        last = path[-1] + 1 if path else 0
        assert int(v.next_tokens[0]) == argmax[0][last]
