"""Shared pieces of the YAML data contracts: schema tags, constrained types, the frozen
base model, and the bounds that keep a simulation's memory and time sane
(:mod:`.schema` documents the contracts).

Every float in a contract is finite: ``.nan`` and ``.inf`` are refused on load (they would
be simulated into nonsense, not fail).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

LATENCY_SCHEMA = "spectune/latency/v1"
ACCEPTANCE_SCHEMA = "spectune/acceptance/v1"
SCENARIO_SCHEMA = "spectune/scenario/v1"

DrafterKind = Literal["draft_model", "heads", "ngram", "self", "suffix"]
# Drafters without a model (host-side lookups): they may propose fewer than k drafts.
HOST_DRAFTER_KINDS = ("ngram", "suffix")
Prob = Annotated[float, Field(ge=0.0, le=1.0)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


# Bounds, each named in the error a value past it gets. They keep one run's memory and time
# sane (a request costs ~100 bytes of arrays and a few DES events; the batch-size histogram
# has max_num_seqs + 1 slots; the optimal-tree DP is O(depth x width x budget^2): 256 nodes
# at depth 256 and width 8 take ~0.4 s, 512 nodes ~20 s, 2000 nodes ~20 min).
MAX_REQUESTS = 1_000_000
MAX_NUM_SEQS = 65_536
MAX_TOKENS = 10_000_000  # one request's prompt or output, or one iteration's token budget
MAX_SPEC_TOKENS = 256  # a chain's k
MAX_TREE_NODES = 256  # a tree's node budget, depth, explicit paths
MAX_LIST = 1024  # acceptance vectors, search lists

# Field docstrings are the fields' descriptions (docs/scenario-reference.md is built
# from them).
CONFIG = ConfigDict(
    frozen=True,
    extra="forbid",
    validate_default=True,
    allow_inf_nan=False,
    use_attribute_docstrings=True,
)


class Frozen(BaseModel):
    model_config = CONFIG
