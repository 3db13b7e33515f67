"""`spectune estimate`: values, JSON contract, best k, optimal tree, bad input -> exit 2."""

from __future__ import annotations

import json

import pytest

from spectune.cli import main
from spectune.simulator import analytic as an
from spectune.simulator.tree import Tree


def run_json(capsys, *argv: str) -> dict:
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_iid_with_k(capsys):
    r = run_json(capsys, "--acceptance", "0.75", "--k", "7", "--cost-ratio", "0.02")
    e = (1 - 0.75**8) / (1 - 0.75)
    assert r["k"] == 7
    assert r["expected_tokens_per_step"] == pytest.approx(e)
    assert r["mean_accepted_len"] == r["expected_tokens_per_step"]
    assert r["speedup"] == pytest.approx(e / (7 * 0.02 + 1))
    assert [b["k"] for b in r["by_k"]] == list(range(17))
    assert r["by_k"][7]["speedup"] == pytest.approx(r["speedup"])
    # The reported best k is the argmax of the table.
    assert r["best_k"] == max(r["by_k"], key=lambda b: b["speedup"])["k"]


def test_best_k_without_k(capsys):
    acc = [0.8, 0.74, 0.7, 0.67, 0.64]
    r = run_json(capsys, "--acceptance", ",".join(map(str, acc)), "--cost-ratio", "0.05")
    k, s = an.best_k(acc, 0.05, 16)
    assert r["k"] == r["best_k"] == k
    assert r["speedup"] == pytest.approx(s)
    assert r["expected_tokens_per_step"] == pytest.approx(an.expected_tokens_chain(acc, k))


def test_verify_cost_growth_lowers_best_k(capsys):
    base = run_json(capsys, "--acceptance", "0.8", "--cost-ratio", "0.02")
    steep = run_json(
        capsys, "--acceptance", "0.8", "--cost-ratio", "0.02", "--verify-per-token", "0.1"
    )
    assert steep["best_k"] < base["best_k"]
    assert steep["by_k"][4]["speedup"] == pytest.approx(
        an.expected_tokens_iid(0.8, 4) / (4 * 0.02 + 1 + 0.4)
    )


def test_speculation_not_worth_it_gives_k0(capsys):
    r = run_json(capsys, "--acceptance", "0.3", "--cost-ratio", "0.8")
    assert r["k"] == 0 and r["speedup"] == 1.0


def test_k_beyond_k_max_extends_table(capsys):
    r = run_json(capsys, "--acceptance", "0.9", "--k", "20", "--k-max", "4")
    assert r["k"] == 20 and len(r["by_k"]) == 21
    assert r["best_k"] <= 4


def test_tree(capsys):
    r = run_json(
        capsys,
        "--ranked",
        "0.8,0.3,0.15",
        "--tree-budget",
        "12",
        "--tree-depth",
        "4",
        "--cost-ratio",
        "0.02",
    )
    t = r["tree"]
    tree = Tree.from_paths(t["paths"])
    assert t["num_nodes"] == tree.num_nodes <= 12 and t["depth"] == tree.max_depth <= 4
    assert tree == an.optimal_tree([0.8, 0.3, 0.15], 12, 4)
    e = an.expected_tokens_tree(tree, [0.8, 0.3, 0.15])
    assert t["expected_tokens_per_step"] == pytest.approx(e)
    assert t["speedup"] == pytest.approx(e / (tree.max_depth * 0.02 + 1))
    # Without --acceptance the chain uses the top candidate's rate.
    assert r["acceptance"] == [0.8]


def test_tree_depth_search_picks_best_speedup(capsys):
    args = ["--ranked", "0.7,0.4", "--tree-budget", "10", "--cost-ratio", "0.1"]
    r = run_json(capsys, *args)
    assert r["tree"]["depth_searched"]
    for d in range(1, 11):
        fixed = run_json(capsys, *args, "--tree-depth", str(d))
        assert fixed["tree"]["speedup"] <= r["tree"]["speedup"] + 1e-12


def test_per_depth_ranked(capsys):
    r = run_json(capsys, "--ranked", "0.9,0.2;0.6", "--tree-budget", "3", "--tree-depth", "2")
    assert r["tree"]["ranked"] == [[0.9, 0.2], [0.6, 0.0]]
    assert r["acceptance"] == [0.9, 0.6]


def test_text_output(capsys):
    assert main(["estimate", "--acceptance", "0.75", "--cost-ratio", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "best k = 9" in out and "tokens/step" in out
    assert main(["estimate", "--ranked", "0.8,0.3", "--tree-budget", "6"]) == 0
    out = capsys.readouterr().out
    assert "optimal tree" in out and "paths: [[0]" in out


def test_help_has_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["estimate", "--help"])
    assert e.value.code == 0
    assert "spectune estimate --acceptance 0.75 --k 7" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--acceptance", "1.2"], "--acceptance: must be in [0, 1]"),
        (["--acceptance", "-0.1"], "--acceptance"),
        (["--acceptance", "0.5,x"], "'x' is not a number"),
        (["--acceptance", ""], "--acceptance"),
        (["--acceptance", "nan"], "--acceptance"),
        (["--acceptance", "0.5", "--k", "-1"], "--k"),
        (["--acceptance", "0.5", "--k", "two"], "--k"),
        (["--acceptance", "0.5", "--k-max", "0"], "--k-max"),
        (["--acceptance", "0.5", "--cost-ratio", "-0.1"], "--cost-ratio: must be >= 0"),
        (["--acceptance", "0.5", "--cost-ratio", "abc"], "--cost-ratio"),
        (["--acceptance", "0.5", "--verify-per-token", "-1"], "--verify-per-token"),
        ([], "give --acceptance"),
        (["--acceptance", "0.5", "--tree-budget", "4"], "need --ranked"),
        (["--ranked", "0.5"], "--tree-budget"),
        (["--ranked", "0.5,2", "--tree-budget", "4"], "--ranked"),
        (["--ranked", "0.5", "--tree-budget", "0"], "--tree-budget"),
        (["--ranked", "0.5", "--tree-budget", "4", "--tree-depth", "0"], "--tree-depth"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, argv, needle):
    assert main(["estimate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectune: error:")
    assert needle in lines[0]
    assert "Traceback" not in captured.err
