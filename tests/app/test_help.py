"""Every command's --help teaches the user: no Sphinx markup, no developer notes."""

from __future__ import annotations

import pytest

from spectune.cli import COMMANDS, main

SUBCOMMANDS = {"profile": ["latency", "acceptance", "train-demo"], "acceptance": ["import"]}


@pytest.mark.parametrize(
    "argv",
    [[c] for c in COMMANDS] + [[c, s] for c, subs in SUBCOMMANDS.items() for s in subs],
    ids=lambda a: " ".join(a),
)
def test_help_has_no_markup_or_developer_notes(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "usage: spectune" in text
    for bad in (
        "``",
        ":class:",
        ":func:",
        ":mod:",
        "imported by the handler",
        "inside the handler",
    ):
        assert bad not in text, (argv, bad)
