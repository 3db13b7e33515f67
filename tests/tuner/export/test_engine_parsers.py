"""Every shape the exporter emits, for every engine version it lists, is accepted by that
engine's own parser (vLLM 0.20.2 and 0.32.0, SGLang 0.5.23, transformers 4.57.6 and 5.19.0
``generate``) or TensorRT-LLM's documented schema — with the values that were simulated —
and what a version cannot run is refused with the reason. The shapes spectune emitted
before are fed to the same parsers and refused (the checks can fail)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trtllm_schema
import yaml
from enginekit import (
    CAP,
    RUNNERS,
    SCHEDULE,
    TOKENS,
    TREE,
    cases,
    controls,
    result_of,
    shell_argv,
    suffix_impossible,
)

from spectune.tuner.export import SpecChoice, Unsupported, capabilities, emit
from spectune.tuner.export.common import capped_schedule

ALL = cases()
PARSED = [c for c in ALL if c.config is not None and (c.caps.engine, c.caps.version) in RUNNERS]
REFUSED = [c for c in ALL if c.config is None]
TRT = [c for c in ALL if c.config is not None and c.caps.engine == "trtllm"]


def _k_at(bands: list, batch: int) -> int:
    return next(k for lo, hi, k in bands if lo <= batch <= hi)


@pytest.mark.parametrize("case", PARSED, ids=lambda c: c.id)
def test_emitted_shape_is_accepted_by_the_engines_parser(engine_runs: dict, case) -> None:
    case = engine_runs["cases"][case.id]  # the session's copy: it holds the shell's argv
    if case.caps.engine == "vllm" and case.choice.method == "suffix" and suffix_impossible():
        pytest.skip(f"vLLM's suffix method needs arctic-inference: {suffix_impossible()}")
    r = result_of(engine_runs, case)
    assert r["ok"], r["error"]
    c, engine = case.choice, case.caps.engine
    assert list(case.config.argv) == case.argv or engine == "hf"  # what the shell passes
    m = c.method
    if engine == "vllm":
        assert r["max_num_seqs"] == CAP
        # vLLM's CPU platform turns chunked prefill off for MLA models (the DeepSeek MTP
        # target) and then raises the token budget to the model length; GPUs keep it.
        assert r["max_num_batched_tokens"] == TOKENS or m == "mtp"
        if not c.speculates:
            assert r.get("method") is None
            return
        assert r["method"] == case.caps.methods[m]
        if c.tree_paths:
            assert r["speculative_token_tree"] is not None
            assert r["num_speculative_tokens"] == len(TREE)
        elif case.bands and m in case.caps.schedule:
            assert r["num_speculative_tokens"] == max(k for *_, k in case.bands)
            assert r["k_by_batch"][1 : CAP + 1] == [_k_at(case.bands, b) for b in range(1, CAP + 1)]
        else:
            assert r["num_speculative_tokens"] == c.num_spec_tokens
    elif engine == "sglang":
        assert r["max_running_requests"] == CAP  # not SGLang's silent 48
        if not c.speculates:
            assert r["speculative_algorithm"] in (None, "NONE")
            return
        name = case.caps.methods[m]
        assert r["speculative_algorithm"] == ("EAGLE" if name == "NEXTN" else name)
        if m == "ngram":
            assert (r["speculative_eagle_topk"], r["speculative_num_draft_tokens"]) == (1, 4)
        elif c.tree_paths:
            steps = (r["speculative_num_steps"], r["speculative_eagle_topk"])
            assert steps == (2, 2) and r["speculative_num_draft_tokens"] == len(TREE) + 1
        else:
            scheduled = bool(case.bands) and m in case.caps.schedule
            k = capped_schedule(case.bands)[0][0][2] if scheduled else c.num_spec_tokens
            assert (r["speculative_num_steps"], r["speculative_eagle_topk"]) == (k, 1)
            assert r["speculative_num_draft_tokens"] == k + 1
            adaptive = scheduled or c.policy == "sglang_adaptive"
            assert bool(r["speculative_adaptive"]) == adaptive
    else:  # hf: the draft length generate() actually used is the simulated k
        if not c.speculates:
            assert "generator" not in r
            return
        want = {
            "draft_model": "AssistedCandidateGenerator",
            "self": "EarlyExitCandidateGenerator",
            "ngram": "PromptLookupCandidateGenerator",
        }[m]
        assert (r["generator"], r["k"]) == (want, c.num_spec_tokens)
        if m != "ngram":
            assert r["threshold"] == 0.0


@pytest.mark.parametrize("case", TRT, ids=lambda c: c.id)
def test_trtllm_yaml_passes_its_documented_schema(case) -> None:
    doc = yaml.safe_load(case.config.text)  # the notes are YAML comments
    assert json.loads(json.dumps(doc)) == json.loads(json.dumps(case.config.payload))
    assert trtllm_schema.check(doc, case.caps.version) == []
    assert (doc["max_batch_size"], doc["max_num_tokens"]) == (CAP, TOKENS)
    c = case.choice
    if not c.speculates:
        assert "speculative_config" not in doc
        return
    spec = doc["speculative_config"]
    assert spec["decoding_type"] == case.caps.methods[c.method]
    sched = spec.get("draft_len_schedule")
    if case.bands and c.method in case.caps.schedule:
        capped, _ = capped_schedule(case.bands)
        assert spec["max_draft_len"] == capped[0][2] == sched[min(sched)]
        for b in range(1, CAP + 1):  # keys are upper bounds; above the largest, k = 0
            k = next((v for key, v in sorted(sched.items()) if b <= key), 0)
            assert k == _k_at(capped, b)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_what_a_version_cannot_run_is_refused_with_the_reason(case) -> None:
    assert case.caps.label in case.reason
    with pytest.raises(Unsupported, match=case.caps.version):
        emit(case.caps, case.choice, case.bands)


@pytest.mark.parametrize("control", controls(), ids=lambda t: f"{t[0]}-{t[1]}-{t[2]}")
def test_shapes_spectune_used_to_emit_are_refused(engine_runs: dict, control) -> None:
    engine, version, cid, _, says = control
    r = engine_runs["results"][(engine, version)]["results"][cid]
    if engine == "hf":  # generate() ignores these keyword arguments: k is not the one asked
        assert r["ok"] and r["k"] != 3, r
        return
    assert not r["ok"] and says in r["error"], r


def test_old_trtllm_shapes_fail_the_schema() -> None:
    # eagle_choices on a draft-target drafter; a schedule whose batch-1 k is below the window
    tree = {"decoding_type": "Draft_Target", "max_draft_len": 2, "speculative_model": "m"}
    assert trtllm_schema.check_spec({**tree, "eagle_choices": [[0], [1]]}, "1.3.0rc27")
    sched = {"decoding_type": "Eagle3", "speculative_model": "m", "max_draft_len": 5}
    assert trtllm_schema.check_spec({**sched, "draft_len_schedule": {1: 4, 8: 5}}, "1.4.0rc4")
    assert trtllm_schema.check_spec({**sched, "eagle_choices": [[0]]}, "1.4.0rc4")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_paths_with_quotes_and_spaces_survive_the_shell(tmp_path: Path, engine: str) -> None:
    odd = '/models/it\'s a "model" $HOME'
    c = SpecChoice("d", "draft_model", None, 3, None, odd, None, CAP, TOKENS, odd + "-target")
    config, _ = emit(capabilities(engine), c, SCHEDULE if engine == "sglang" else None)
    argv = shell_argv(config.text, str(tmp_path))
    assert argv == list(config.argv)
    assert odd in argv or any(odd in a for a in argv)
