"""Shared pieces of the YAML data contracts: schema tags, constrained types, the frozen
base model (:mod:`.schema` documents the contracts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

LATENCY_SCHEMA = "spectune/latency/v1"
ACCEPTANCE_SCHEMA = "spectune/acceptance/v1"
SCENARIO_SCHEMA = "spectune/scenario/v1"

DrafterKind = Literal["draft_model", "heads", "ngram", "self"]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
