"""Engine exports carry the simulated values (JSON / YAML / Python parse; the engines' own
parsers are in tests/tuner/export/); the CLI emits them, per engine version."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest
import yaml
from tunerkit import write_tiny

from spectune.cli import main
from spectune.simulator.errors import InputError
from spectune.tuner.export import ENGINES, SpecChoice, Unsupported, capabilities, emit

CHAIN = SpecChoice(
    drafter="small",
    kind="draft_model",
    num_spec_tokens=4,
    draft_model="org/small-1b",
    max_num_seqs=128,
    max_num_batched_tokens=4096,
    target_model="org/target-8b",
)
SCHEDULE = [(1, 1, 5), (2, 2, 5), (3, 4, 4), (5, 8, 4), (9, 16, 2), (17, 128, 0)]
TREE_PATHS = ((0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0))
TREE = SpecChoice(
    drafter="eagle",
    kind="heads",
    variant="eagle",
    num_spec_tokens=3,
    tree_paths=TREE_PATHS,
    draft_model="org/eagle",
)


def vllm_cfg(text: str) -> dict:
    argv = shlex.split(text.replace("\\\n", " "), comments=True)
    return json.loads(argv[argv.index("--speculative-config") + 1])


def test_vllm_chain_with_schedule_needs_0_24_or_later() -> None:
    out, left = emit(capabilities("vllm", "0.32.0"), CHAIN, SCHEDULE)
    cfg = vllm_cfg(out.text)
    assert cfg == out.payload["speculative_config"] and not left
    assert cfg["method"] == "draft_model" and cfg["model"] == "org/small-1b"
    # the largest window covers every band; bands merged where k repeats
    assert cfg["num_speculative_tokens"] == 5
    assert cfg["num_speculative_tokens_per_batch_size"] == [
        [1, 2, 5],
        [3, 8, 4],
        [9, 16, 2],
        [17, 128, 0],
    ]
    assert out.argv[:3] == ("vllm", "serve", "org/target-8b")
    assert "--max-num-seqs" in out.argv and "--max-num-batched-tokens" in out.argv
    old, left = emit(capabilities("vllm", "0.20.2"), CHAIN, SCHEDULE)
    assert "num_speculative_tokens_per_batch_size" not in vllm_cfg(old.text)
    assert vllm_cfg(old.text)["num_speculative_tokens"] == 4 and "0.24" in left[0]


def test_vllm_trees_only_where_the_version_has_them() -> None:
    cfg = vllm_cfg(emit(capabilities("vllm", "0.20.2"), TREE)[0].text)
    assert cfg["method"] == "eagle" and cfg["num_speculative_tokens"] == len(TREE_PATHS)
    tree = ast.literal_eval(cfg["speculative_token_tree"])
    assert tree == sorted(TREE_PATHS, key=lambda t: (len(t), t))
    with pytest.raises(Unsupported, match=r"0\.9-0\.20"):
        emit(capabilities("vllm", "0.32.0"), TREE)


def test_every_variant_gets_the_engines_own_name() -> None:
    want = {
        "vllm": ["eagle", "eagle3", "mtp", "medusa", "ngram", "suffix"],
        "sglang": ["EAGLE", "EAGLE3", "NEXTN", None, "NGRAM", None],
        "trtllm": ["Eagle", "Eagle3", "MTP", None, "NGram", "SA"],
    }
    variants = ["eagle", "eagle3", "mtp", "medusa", "ngram", "suffix"]
    for engine, names in want.items():
        caps = capabilities(engine)
        for variant, name in zip(variants, names, strict=True):
            kind = "ngram" if variant in ("ngram", "suffix") else "heads"
            c = SpecChoice("d", kind, variant, 3, draft_model="org/d", target_model="org/t")
            assert caps.methods.get(c.method) == name, (engine, variant)
    assert capabilities("trtllm").methods["draft_model"] == "Draft_Target"
    assert capabilities("sglang").methods["draft_model"] == "STANDALONE"


def test_sglang_always_writes_steps_topk_tokens_and_the_cap() -> None:
    eagle = SpecChoice("e", "heads", "eagle3", 3, draft_model="org/eagle3", max_num_seqs=64)
    out, _ = emit(capabilities("sglang"), eagle, SCHEDULE)
    args = out.payload["args"]
    assert args["--speculative-algorithm"] == "EAGLE3"
    assert args["--max-running-requests"] == 64
    # adaptive: start-up steps = the batch-1 band's, one of the candidates
    adaptive = json.loads(out.files["adaptive_spec.json"])
    assert args["--speculative-num-steps"] == 5 == adaptive["1"]["candidate_steps"][0]
    assert (args["--speculative-eagle-topk"], args["--speculative-num-draft-tokens"]) == (1, 6)
    assert "cat > adaptive_spec.json <<'EOF'" in out.text  # the paste writes the file
    tree = emit(capabilities("sglang"), TREE)[0].payload["args"]
    assert tree["--speculative-num-steps"] == 3  # depth
    assert tree["--speculative-eagle-topk"] == 2  # widest sibling rank + 1
    assert tree["--speculative-num-draft-tokens"] == len(TREE_PATHS) + 1


def test_a_rising_schedule_is_capped_at_its_batch_1_k() -> None:
    rising = [(1, 1, 2), (2, 8, 4), (9, 128, 1)]
    eagle = SpecChoice("e", "heads", "eagle", 2, draft_model="org/e", max_num_seqs=128)
    sg, _ = emit(capabilities("sglang"), eagle, rising)
    steps = [v["candidate_steps"][0] for v in json.loads(sg.files["adaptive_spec.json"]).values()]
    assert sg.payload["args"]["--speculative-num-steps"] == 2 and max(steps) == 2
    trt, _ = emit(capabilities("trtllm"), eagle, rising)
    spec = trt.payload["speculative_config"]
    assert spec["max_draft_len"] == 2 == spec["draft_len_schedule"][min(spec["draft_len_schedule"])]
    assert max(spec["draft_len_schedule"].values()) == 2


def test_trtllm_yaml() -> None:
    out, _ = emit(capabilities("trtllm"), CHAIN, SCHEDULE)
    doc = yaml.safe_load(out.text)  # comments are YAML comments
    assert doc == out.payload
    spec = doc["speculative_config"]
    assert spec["decoding_type"] == "Draft_Target" and spec["speculative_model"] == "org/small-1b"
    assert spec["max_draft_len"] == 5
    # keys = band upper bounds, trailing k = 0 left implicit (above the largest key: 0)
    assert spec["draft_len_schedule"] == {2: 5, 8: 4, 16: 2}
    assert (doc["max_batch_size"], doc["max_num_tokens"]) == (128, 4096)
    tree = yaml.safe_load(emit(capabilities("trtllm", "1.3.0rc27"), TREE)[0].text)
    spec = tree["speculative_config"]
    assert spec["decoding_type"] == "Eagle"
    assert spec["eagle_choices"] == [list(p) for p in sorted(TREE_PATHS, key=lambda t: (len(t), t))]
    assert spec["max_draft_len"] == 3 and spec["max_total_draft_tokens"] == 6
    with pytest.raises(Unsupported, match="eagle_choices"):
        emit(capabilities("trtllm", "1.4.0rc4"), TREE)


def test_hf_sets_k_on_the_drafting_model() -> None:
    out, _ = emit(capabilities("hf"), CHAIN, SCHEDULE)
    assert out.payload["draft_generation_config"]["num_assistant_tokens"] == 4  # simulated k
    assert "assistant.generation_config.num_assistant_tokens = 4" in out.text
    assert out.payload["generate"] == {}  # k is not a generate() keyword
    ast.parse(out.text)  # Python as pasted
    ng = emit(capabilities("hf"), SpecChoice("ng", "ngram", None, 3))[0].payload
    assert ng["generate"] == {"prompt_lookup_num_tokens": 3}
    skip = emit(capabilities("hf"), SpecChoice("s", "self", None, 2, self_layers=8))[0]
    assert skip.payload["generate"] == {"assistant_early_exit": 8}
    assert "target.generation_config.num_assistant_tokens = 2" in skip.text


@pytest.mark.parametrize("engine", ENGINES)
def test_plain_decoding_has_no_speculation(engine: str) -> None:
    out, _ = emit(capabilities(engine), SpecChoice(max_num_seqs=32))
    assert not out.payload.get("speculative_config")
    assert not any("--speculative" in w for w in out.argv)
    assert "assistant" not in out.payload
    assert "plain decoding" in out.text


def test_placeholders_are_flagged() -> None:
    out, _ = emit(capabilities("vllm"), SpecChoice("small", "draft_model", None, 3))
    assert "<target-model>" in out.argv and "<small-checkpoint>" in out.text
    assert any("target.model is not set" in n for n in out.notes)
    assert any("drafters[small].model is not set" in n for n in out.notes)
    heads, _ = emit(capabilities("sglang"), SpecChoice("e", "heads", None, 3, draft_model="m"))
    assert heads.payload["args"]["--speculative-algorithm"] == "EAGLE"
    assert any("drafters[e].variant is not set: eagle assumed" in n for n in heads.notes)
    named, _ = emit(capabilities("sglang"), SpecChoice("e", "heads", "eagle3", 3, draft_model="m"))
    assert not any("variant" in n for n in named.notes)


def test_unknown_engine_or_version() -> None:
    with pytest.raises(InputError):
        capabilities("tgi")
    with pytest.raises(InputError, match=r"0\.20\.2, 0\.32\.0"):
        capabilities("vllm", "0.21.0")


@pytest.mark.parametrize("engine", ENGINES)
def test_cli_emit_carries_the_recommendation(
    tmp_path: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    argv = ["recommend", str(scen), "--set", "search.tree_budgets=[]", "--trials", "8"]
    assert main([*argv, "--emit", engine, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rec, em = d["recommendation"]["config"], d["emit"]
    assert em["engine"] == engine and em["version"] == capabilities(engine).version
    assert em["emitted_config"] == d["recommendation"]["label"]  # chains run everywhere
    k = rec["num_spec_tokens"]
    if rec["drafter"] == "none":
        assert "plain decoding" in em["paste"]
        return
    cfg = em["config"]
    if engine == "vllm":
        assert vllm_cfg(em["paste"]) == cfg["speculative_config"]
        assert cfg["speculative_config"]["num_speculative_tokens"] == k
        assert cfg["max_num_seqs"] == 64  # the scenario's cap, which was simulated
    elif engine == "trtllm":
        assert yaml.safe_load(em["paste"]) == cfg
        assert cfg["speculative_config"]["max_draft_len"] == k
    elif engine == "sglang":
        assert cfg["args"]["--max-running-requests"] == 64
        if "--speculative-num-steps" in cfg["args"]:
            assert cfg["args"]["--speculative-num-steps"] == k
    else:
        key = "prompt_lookup_num_tokens" if rec["drafter"] == "ngram" else None
        got = (
            cfg["generate"][key] if key else cfg["draft_generation_config"]["num_assistant_tokens"]
        )
        assert got == k


def test_cli_says_why_and_emits_the_best_runnable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    argv = ["recommend", str(scen), "--exhaustive", "--emit", "vllm", "--engine-version", "0.32.0"]
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    em = d["emit"]
    if d["recommendation"]["tree_paths"]:  # a tree pick: 0.32.0 has no trees
        assert em["emitted_config"] != d["recommendation"]["label"]
        assert any("0.9-0.20" in m for m in em["messages"])
    assert "tree" not in em["emitted_config"]
    assert "speculative_token_tree" not in em["paste"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--engine-version", "0.32.0"], "needs --emit"),
        (["--emit", "vllm", "--engine-version", "9.9"], "was not checked"),
    ],
)
def test_bad_engine_flags_exit_2(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", str(write_tiny(tmp_path)), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_help_lists_the_checked_versions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for engine, versions in (("vllm", "0.20.2, 0.32.0"), ("trtllm", "1.3.0rc27, 1.4.0rc4")):
        assert f"{engine}: {versions} (default {versions.split(', ')[-1]})" in out
    assert "sglang: 0.5.23" in out and "hf: 4.57.6, 5.19.0" in out


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_a_schedule_policy_emits_its_simulated_bands(engine: str) -> None:
    # The bands travel in the choice (what the DES ran), not as emit()'s argument, and
    # come out exactly as the same bands passed the old way (which the parsers check).
    import dataclasses

    bands = ((1, 1, 4), (2, 4, 3), (5, 8, 2), (9, 16, 0))
    base = dataclasses.replace(CHAIN, kind="heads", variant="eagle", max_num_seqs=16)
    caps = capabilities(engine, None)
    as_policy, _ = emit(caps, dataclasses.replace(base, policy="schedule", bands=bands))
    as_argument, _ = emit(caps, base, list(bands))
    assert as_policy.payload == as_argument.payload and as_policy.text == as_argument.text
    # and a policy's bands win over a stray argument
    other, _ = emit(caps, dataclasses.replace(base, policy="schedule", bands=bands), [(1, 16, 1)])
    assert other.payload == as_policy.payload
