"""A vLLM spec's batch-size schedule (``VllmSpec.bands``): written as vLLM's
``num_speculative_tokens_per_batch_size``, checked by vLLM's rules, and invisible when
unset (same config, label and key as before schedules existed)."""

from __future__ import annotations

import json

import pytest

from spectune.profiler.engines.vllm_config import (
    VllmSettings,
    VllmSpec,
    bands_label,
    check_bands,
)
from spectune.simulator.errors import InputError

KEY = "num_speculative_tokens_per_batch_size"


def test_unset_schedule_changes_nothing():
    spec = VllmSpec("draft_model", 6, model="/d")
    assert spec.bands is None
    assert spec.config() == {"method": "draft_model", "model": "/d", "num_speculative_tokens": 6}
    assert spec.label() == "draft_model(d) k=6"
    assert VllmSpec("ngram", 4, 1, 3).label() == "ngram[1-3] k=4"
    # the keys fixed-k configurations had before the field existed (file names, resumes)
    assert VllmSettings(model="/m", max_num_seqs=8, spec=spec).key() == "49e8a6f7f546"
    st = VllmSettings(model="/m", max_num_seqs=8, spec=VllmSpec("ngram", 4, 1, 3))
    assert st.key() == "a84e2994346b"
    assert VllmSettings(model="/m").key() == "7521402e072c"
    assert KEY not in " ".join(st.serve_args("127.0.0.1", 8000, "x"))


def test_schedule_is_written_sorted_into_both_entry_points():
    spec = VllmSpec("draft_model", 6, model="/d", bands=[[5, 8, 3], [1, 2, 3], [3, 4, 4]])
    assert spec.bands == ((1, 2, 3), (3, 4, 4), (5, 8, 3))
    want = [[1, 2, 3], [3, 4, 4], [5, 8, 3]]
    assert spec.config()[KEY] == want
    assert spec.config()["num_speculative_tokens"] == 6
    st = VllmSettings(model="/m", max_num_seqs=8, spec=spec)
    assert st.engine_kwargs()["speculative_config"][KEY] == want
    args = st.serve_args("127.0.0.1", 8000, "x")
    assert json.loads(args[args.index("--speculative-config") + 1])[KEY] == want
    assert spec.label() == "draft_model(d) k=6 by batch [1-2:3, 3-4:4, 5-8:3]"
    ngram = VllmSpec("ngram", 8, 1, 3, bands=((1, 1, 8), (2, 16, 4)))
    assert ngram.config()[KEY] == [[1, 1, 8], [2, 16, 4]]
    assert ngram.label() == "ngram[1-3] k=8 by batch [1:8, 2-16:4]"
    # a schedule is another configuration; the same schedule is the same one
    fixed = VllmSettings(model="/m", max_num_seqs=8, spec=VllmSpec("draft_model", 6, model="/d"))
    assert st.key() != fixed.key()
    again = VllmSpec("draft_model", 6, model="/d", bands=((1, 2, 3), (3, 4, 4), (5, 8, 3)))
    assert st.key() == VllmSettings(model="/m", max_num_seqs=8, spec=again).key()
    assert bands_label([(1, 1, 2)]) == "[1:2]"


BAD = [
    [],
    [[1, 2]],
    [[0, 2, 3]],
    [[1, 2, -1]],
    [[2, 4, 3]],  # does not start at 1
    [[1, 4, 3], [3, 8, 2]],  # overlap
    [[1, 2, 3], [4, 3, 2]],  # ends before it starts
    [[1, 2.5, 3]],
    "1,2,3",
]


@pytest.mark.parametrize("bands", BAD)
def test_bad_schedules_are_input_errors(bands):
    with pytest.raises(InputError, match=KEY):
        VllmSpec("ngram", 4, bands=bands)


def test_fixed_width_proposer_takes_no_schedule():
    with pytest.raises(InputError, match="fixed-width"):
        VllmSpec("fixed", 4, bands=[[1, 8, 2]])


def test_gaps_and_k_zero_are_allowed():
    assert check_bands([[1, 1, 4], [4, 8, 0]]) == ((1, 1, 4), (4, 8, 0))


def test_vllm_reads_the_schedule_as_written():
    """vLLM's own parser takes every schedule we write and refuses the ones we refuse."""
    utils = pytest.importorskip("vllm.v1.spec_decode.dynamic.utils")
    spec = VllmSpec("draft_model", 6, model="/d", bands=[[1, 2, 3], [3, 4, 8], [6, 8, 2]])
    dense = utils.build_dynamic_sd_schedule_lookup(spec.config()[KEY], 10, spec.k)
    # k by batch size; 5 is in a gap (the previous range's k), 9-10 past the end, 8 capped at 6
    assert dense[1:] == [3, 3, 6, 6, 6, 2, 2, 2, 2, 2]
    for bands in BAD[:-2]:  # the two we refuse as types vLLM would coerce
        with pytest.raises(ValueError):
            utils.validate_and_normalize_dynamic_sd_schedule(bands)


def test_boolean_extras_are_vllm_flags():
    st = VllmSettings(model="/m", extra={"async_scheduling": False, "max_logprobs": 3})
    args = st.serve_args("127.0.0.1", 8000, "x")
    assert "--no-async-scheduling" in args
    assert args[args.index("--max-logprobs") + 1] == "3"
    assert st.engine_kwargs()["async_scheduling"] is False
    on = VllmSettings(model="/m", extra={"async_scheduling": True})
    assert "--async-scheduling" in on.serve_args("127.0.0.1", 8000, "x")
