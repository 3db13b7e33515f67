"""docs/scenario-reference.md is generated from the schema and must match it."""

from __future__ import annotations

from conftest import REPO

from spectune.simulator.reference import scenario_reference
from spectune.simulator.schema import Scenario, Serving, Workload


def test_reference_page_is_current() -> None:
    page = (REPO / "docs" / "scenario-reference.md").read_text()
    assert page == scenario_reference(), (
        "docs/scenario-reference.md is stale: python -m spectune.simulator.reference "
        "> docs/scenario-reference.md"
    )


def test_every_field_is_documented_with_a_description() -> None:
    page = scenario_reference()
    for model in (Scenario, Serving, Workload):
        for name, f in model.model_fields.items():
            assert f"| `{f.alias or name}` |" in page
            assert f.description, f"{model.__name__}.{name} has no docstring"
    assert "<= 65,536" in page and "<= 256" in page  # bounds are listed
