"""`spectune estimate` in every acceptance convention: the same chain however it is given,
the convention it used in the output, a given tree scored, the inversion from AL."""

from __future__ import annotations

import json

import pytest

from spectune.cli import main
from spectune.simulator import analytic as an
from spectune.simulator.analytic import conventions as cv
from spectune.simulator.tree import Tree


def run_json(capsys, *argv: str) -> dict:
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_chain_form_gives_the_same_answer(capsys):
    # The example: AL 2.25 measured at k = 3 is a vLLM acceptance rate of 0.4167;
    # read as a per-position rate that would predict 1.66 tokens per step.
    k, al = 3, 2.25
    a = cv.fit_iid_from_length(al, k)
    u = ",".join(str(x) for x in cv.unconditional_from_conditional([a] * k))
    forms = [
        ("--acceptance", str(a)),
        ("--unconditional", u),
        ("--acceptance-length", str(al)),
        ("--acceptance-rate", str((al - 1) / k)),
    ]
    out = [run_json(capsys, flag, val, "--k", str(k)) for flag, val in forms]
    for r in out:
        assert r["expected_tokens_per_step"] == pytest.approx(al, abs=1e-6)
    assert (
        "unconditional" in out[1]["convention"] and "vLLM acceptance rate" in out[3]["convention"]
    )
    wrong = run_json(capsys, "--acceptance", str((al - 1) / k), "--k", str(k))
    assert wrong["expected_tokens_per_step"] == pytest.approx(1.66, abs=0.01)


def test_text_says_which_convention(capsys):
    assert main(["estimate", "--unconditional", "0.8,0.5", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("acceptance read as: unconditional u_i")
    assert "chain acceptance 0.8,0.625" in out


def test_fit_from_length(capsys):
    r = run_json(capsys, "--fit-from-length", "3.3616", "--k", "4")
    assert r["per_position"] == pytest.approx(0.8, abs=1e-6)
    assert r["vllm_acceptance_rate"] == pytest.approx(0.5904)
    assert r["unconditional"] == pytest.approx([0.8, 0.64, 0.512, 0.4096], abs=1e-6)


def test_sequoia_ranked_and_given_tree(capsys):
    p = [0.7, 0.4, 0.2]
    s = ",".join(str(x) for x in cv.sequoia_from_ranked(p))
    paths = [[0], [1], [0, 0], [0, 1], [2]]
    a = run_json(capsys, "--ranked", ",".join(map(str, p)), "--tree", json.dumps(paths))
    b = run_json(
        capsys, "--ranked", s, "--ranked-convention", "sequoia", "--tree", json.dumps(paths)
    )
    e = an.expected_tokens_tree(Tree.from_paths(paths), p)
    assert a["tree_scored"]["expected_tokens_per_step"] == pytest.approx(e)
    assert b["tree_scored"]["expected_tokens_per_step"] == pytest.approx(e)
    assert "sequoia" in b["ranked_convention"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--acceptance-length", "2.5"], "--k: --acceptance-length needs --k K"),
        (["--acceptance-length", "6", "--k", "4"], "--acceptance-length: mean acceptance length"),
        (["--acceptance-rate", "59", "--k", "4"], "--acceptance-rate: must be in [0, 1]"),
        (["--acceptance", "0.5", "--unconditional", "0.5"], "give one chain acceptance form"),
        (["--unconditional", "0.5,0.7"], "--unconditional: unconditional rates"),
        (["--fit-from-length", "2"], "--fit-from-length needs --k"),
        (["--ranked", "0.6,0.5", "--ranked-convention", "sequoia", "--tree", "[[0]]"], "<= 1"),
        (["--ranked", "0.6", "--tree", "[[1]]"], "--tree"),
        (["--acceptance", "0.5", "--tree", "[[0]]"], "need --ranked"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, argv, needle):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spectune: error:") and needle in err[0], err
