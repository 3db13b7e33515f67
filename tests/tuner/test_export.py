"""Engine exports parse (JSON / YAML) and carry the chosen values; the CLI emits them."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator.errors import InputError
from spectune.tuner.export import ENGINES, SpecChoice, emit

CHAIN = SpecChoice(
    drafter="small",
    kind="draft_model",
    num_spec_tokens=4,
    draft_model="org/small-1b",
    max_num_seqs=128,
)
SCHEDULE = [(1, 1, 5), (2, 2, 5), (3, 4, 4), (5, 8, 4), (9, 16, 2), (17, 128, 0)]
TREE_PATHS = ((0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0))
TREE = SpecChoice(
    drafter="eagle", kind="heads", num_spec_tokens=3, tree_paths=TREE_PATHS, draft_model="org/eagle"
)


def vllm_json(text: str) -> dict:
    m = re.search(r"--speculative-config '(.*)'", text)
    assert m, text
    return json.loads(m.group(1))


def test_vllm_chain_with_schedule() -> None:
    out = emit("vllm", CHAIN, SCHEDULE, target="org/target-8b")
    cfg = vllm_json(out.text)
    assert cfg == out.payload
    assert cfg["method"] == "draft_model" and cfg["model"] == "org/small-1b"
    # the maximum window covers every band; bands merged where k repeats
    assert cfg["num_speculative_tokens"] == 5
    assert cfg["num_speculative_tokens_per_batch_size"] == [
        [1, 2, 5],
        [3, 8, 4],
        [9, 16, 2],
        [17, 128, 0],
    ]
    assert "vllm serve org/target-8b --max-num-seqs 128" in out.text


def test_vllm_tree_and_ngram() -> None:
    cfg = vllm_json(emit("vllm", TREE).text)
    assert cfg["method"] == "eagle"
    assert cfg["num_speculative_tokens"] == len(TREE_PATHS)
    tree = ast.literal_eval(cfg["speculative_token_tree"])
    assert tree == sorted(TREE_PATHS, key=lambda t: (len(t), t))
    ng = vllm_json(emit("vllm", SpecChoice("ng", "ngram", 3)).text)
    assert ng["method"] == "ngram" and ng["num_speculative_tokens"] == 3
    assert ng["prompt_lookup_max"] >= ng["prompt_lookup_min"] >= 1


def test_sglang_flags_and_adaptive_json() -> None:
    out = emit("sglang", SpecChoice("e", "heads", 3, draft_model="org/eagle"), SCHEDULE)
    args = out.payload["args"]
    assert args["--speculative-algorithm"] == "EAGLE"
    assert args["--speculative-num-steps"] == 3
    assert args["--speculative-eagle-topk"] == 1
    assert args["--speculative-num-draft-tokens"] == 4
    adaptive = json.loads(out.files["adaptive_spec.json"])
    assert adaptive == {
        "1": {"candidate_steps": [5]},
        "3": {"candidate_steps": [4]},
        "9": {"candidate_steps": [2]},
        "17": {"candidate_steps": [0]},
    }
    assert "--speculative-adaptive-config adaptive_spec.json" in out.text
    tree = emit("sglang", TREE).payload["args"]
    assert tree["--speculative-num-steps"] == 3  # depth
    assert tree["--speculative-eagle-topk"] == 2  # widest sibling rank + 1
    assert tree["--speculative-num-draft-tokens"] == len(TREE_PATHS) + 1
    draft = emit("sglang", CHAIN).payload["args"]
    assert draft["--speculative-algorithm"] == "STANDALONE"
    assert draft["--speculative-draft-model-path"] == "org/small-1b"


def test_trtllm_yaml() -> None:
    out = emit("trtllm", CHAIN, SCHEDULE)
    doc = yaml.safe_load(out.text)  # comments are YAML comments
    assert doc == out.payload
    spec = doc["speculative_config"]
    assert spec["decoding_type"] == "DraftTarget"
    assert spec["speculative_model"] == "org/small-1b"
    assert spec["max_draft_len"] == 5
    # keys = band upper bounds, trailing k = 0 left implicit (above the largest key: 0)
    assert spec["draft_len_schedule"] == {2: 5, 8: 4, 16: 2}
    assert doc["max_batch_size"] == 128
    tree = yaml.safe_load(emit("trtllm", TREE).text)["speculative_config"]
    assert tree["decoding_type"] == "Eagle3"
    assert tree["eagle_choices"] == [list(p) for p in sorted(TREE_PATHS, key=lambda t: (len(t), t))]
    assert tree["max_draft_len"] == 3 and tree["max_total_draft_tokens"] == 6


def test_hf_kwargs() -> None:
    out = emit("hf", CHAIN, SCHEDULE)
    kwargs = json.loads(out.text.split("generate_kwargs = ", 1)[1])
    assert kwargs == out.payload
    assert kwargs["num_assistant_tokens"] == 5  # batch-1 band: assisted generation is batch-1
    assert kwargs["num_assistant_tokens_schedule"] == "constant"
    assert kwargs["assistant_model"] == "org/small-1b"
    ng = emit("hf", SpecChoice("ng", "ngram", 3)).payload
    assert ng == {"prompt_lookup_num_tokens": 3}
    layer_skip = emit("hf", SpecChoice("s", "self", 2, self_layers=8)).payload
    assert layer_skip["assistant_early_exit"] == 8


@pytest.mark.parametrize("engine", ENGINES)
def test_plain_decoding_has_no_speculation(engine: str) -> None:
    out = emit(engine, SpecChoice(max_num_seqs=32))
    assert "speculative_config" not in out.payload
    commands = [line for line in out.text.splitlines() if not line.startswith("#")]
    assert not any("--speculative" in line for line in commands)
    assert "assistant_model" not in out.payload
    assert "plain decoding" in out.text


def test_unknown_engine() -> None:
    with pytest.raises(InputError):
        emit("tgi", CHAIN)


@pytest.mark.parametrize("engine", ENGINES)
def test_cli_emit_carries_the_recommendation(
    tmp_path: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    argv = [
        "recommend",
        str(scen),
        "--set",
        "search.tree_budgets=[]",
        "--trials",
        "8",
        "--emit",
        engine,
        "--json",
    ]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    rec, em = d["recommendation"]["config"], d["emit"]
    assert em["engine"] == engine
    k = rec["num_spec_tokens"]
    sched = d["schedule"]
    if rec["drafter"] == "none":
        assert "plain decoding" in em["paste"]
        return
    k_max = max([k, *(b["num_spec_tokens"] for b in sched["bands"])]) if sched else k
    cfg = em["config"]
    if engine == "vllm":
        assert vllm_json(em["paste"]) == cfg and cfg["num_speculative_tokens"] == k_max
    elif engine == "trtllm":
        # JSON turns the schedule's int keys into strings
        assert json.loads(json.dumps(yaml.safe_load(em["paste"]))) == cfg
        assert cfg["speculative_config"]["max_draft_len"] == k_max
    elif engine == "sglang":
        assert cfg["args"]["--speculative-num-steps"] == k
    else:
        key = "prompt_lookup_num_tokens" if rec["drafter"] == "ngram" else "num_assistant_tokens"
        assert cfg[key] == (sched["bands"][0]["num_spec_tokens"] if sched else k)
