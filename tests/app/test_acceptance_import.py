"""`spectune acceptance import`: each format on a small file written here, conversions to
spectune's conventions, the simulator replaying what was imported, bad input -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spectune.cli import main
from spectune.simulator.schema import load_acceptance_profile

PROM = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="llama"} 60.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="llama"} 40.0
# HELP vllm:spec_decode_num_drafts_created Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_created gauge
vllm:spec_decode_num_drafts_created{engine="0",model_name="llama"} 1.7e+09
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="llama"} 300.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="llama"} 150.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="llama",position="0"} 50.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="llama",position="0"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="llama",position="1"} 45.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="llama",position="2"} 25.0
vllm:num_requests_running{engine="0",model_name="llama"} 0.0
"""

BENCH = {
    "date": "20261129-190000",
    "backend": "vllm",
    "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "num_prompts": 100,
    "completed": 100,
    "spec_decode_acceptance_rate": 50.0,
    "spec_decode_acceptance_length": 2.5,
    "spec_decode_num_drafts": 100,
    "spec_decode_draft_tokens": 300,
    "spec_decode_accepted_tokens": 150,
    "spec_decode_per_position_acceptance_rates": [0.8, 0.45, 0.25],
}


def response(acc: list[int], drafted: list[int], completion: int, k: int = 3) -> dict:
    """A completion response as vLLM's OpenAI server returns it with
    --per-request-spec-decode-metrics detailed."""
    steps = len(acc)
    hist = [0] * (k + 1)
    for a in acc:
        hist[a] += 1
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": completion,
            "total_tokens": 12 + completion,
        },
        "metrics": {
            "time_to_first_token_ms": 12.5,
            "speculative_decoding": {
                "mean_acceptance_length": 1 + sum(acc) / steps,
                "draft_acceptance_rate": sum(acc) / sum(drafted),
                "acceptance_histogram": hist,
                "num_spec_steps": steps,
                "num_accepted_draft_tokens": sum(acc),
                "num_draft_tokens": sum(drafted),
                "num_spec_tokens": k,
                "per_step_accepted": acc,
                "per_step_drafted": drafted,
            },
        },
    }


def run(tmp_path: Path, capsys, name: str, content: str, *flags: str) -> tuple[dict, Path]:
    src = tmp_path / name
    src.write_text(content)
    out = tmp_path / "acc.yaml"
    assert main(["acceptance", "import", str(src), "--out", str(out), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out), out


def test_prometheus_dump(tmp_path, capsys):
    s, out = run(
        tmp_path, capsys, "metrics.txt", PROM, "--drafter", "eagle", "--drafter-kind", "heads"
    )
    assert s["format"] == "prometheus" and s["k"] == 3
    # per-position counters / drafts are unconditional: u = .8, .45, .25 (engines summed)
    assert s["unconditional"] == pytest.approx([0.8, 0.45, 0.25])
    assert s["per_position"] == pytest.approx([0.8, 0.45 / 0.8, 0.25 / 0.45])
    assert s["acceptance_length"] == pytest.approx(2.5)  # = 1 + 150 / 100
    assert s["vllm_acceptance_rate"] == pytest.approx(0.5)
    p = load_acceptance_profile(out)
    assert p.target == "llama" and p.drafter_kind == "heads"
    assert p.counts.num_steps == 100 and p.counts.num_accepted_tokens == 150


def test_vllm_bench_result(tmp_path, capsys):
    s, out = run(tmp_path, capsys, "bench.json", json.dumps(BENCH))
    assert s["format"] == "vllm-bench"
    assert s["per_position"] == pytest.approx([0.8, 0.5625, 0.25 / 0.45])
    assert s["acceptance_length"] == pytest.approx(2.5)
    assert load_acceptance_profile(out).target == "meta-llama/Llama-3.1-8B-Instruct"


def test_vllm_bench_without_per_position_fits_iid(tmp_path, capsys):
    doc = {k: v for k, v in BENCH.items() if k != "spec_decode_per_position_acceptance_rates"}
    s, _ = run(tmp_path, capsys, "bench.json", json.dumps(doc), "--k", "3")
    assert len(s["per_position"]) == 1
    assert s["acceptance_length"] == pytest.approx(2.5, abs=1e-9)


def test_vllm_per_request_detailed(tmp_path, capsys):
    lines = [
        # 3 + 1 + 4 = 8 tokens in steps; 10 generated: the prefill's token + 1 step that
        # drafted nothing (an n-gram miss vLLM does not record)
        response([2, 0, 3], [3, 3, 3], completion=10),
        response([3, 3], [3, 3], completion=9),
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    s, out = run(tmp_path, capsys, "requests.jsonl", text, "--drafter-kind", "ngram")
    assert s["format"] == "vllm-requests" and s["trajectories"] == 2
    # 5 drafting steps accept 11 of 15: AL = 1 + 11 / 5
    assert s["num_drafts"] == 5
    assert s["acceptance_length"] == pytest.approx(3.2, abs=0.05)  # from the pooled a_i
    assert s["match_probability"] == pytest.approx(5 / 6)
    p = load_acceptance_profile(out)
    t = p.acceptance.trajectories
    assert t[0].accepted == [2, 0, 3] and t[0].undrafted_steps == 1 and t[0].output_tokens == 10
    assert t[1].undrafted_steps == 0 and t[0].prompt_tokens == 12


def test_generic_jsonl_and_bonus_convention(tmp_path, capsys):
    a, _ = run(tmp_path, capsys, "a.jsonl", '{"accept_lengths": [3, 1, 4], "k": 3}\n')
    b, _ = run(tmp_path, capsys, "b.jsonl", "[3, 1, 4]\n", "--bonus-included", "--k", "3")
    c, _ = run(tmp_path, capsys, "c.jsonl", '{"accepted": [2, 0, 3], "k": 3}\n')
    assert a["per_position"] == b["per_position"] == c["per_position"]
    assert a["num_drafts"] == 3


def test_imported_trajectories_replay_in_the_simulator(tmp_path, capsys, scenario_dir):
    # One recorded request, replayed by B identical requests at its own k: the DES's mean
    # accepted length is the record's, 1 + (2 + 0 + 3 + 1 + 3) / 5.
    rec = {"accepted": [2, 0, 3, 1, 3], "k": 3, "output_tokens": 15}
    _, out = run(tmp_path, capsys, "r.jsonl", json.dumps(rec) + "\n", "--drafter", "small")
    from spectune.simulator import load_scenario, simulate

    rs = load_scenario(
        scenario_dir / "scenario.yaml",
        [
            f"drafters.0.acceptance={{profile: {out}}}",
            "workload={mode: offline, num_requests: 4, identical: true, prompt_tokens: "
            "{dist: constant, value: 10}, output_tokens: {dist: constant, value: 15}}",
            "spec.num_spec_tokens=3",
        ],
    )
    m = simulate(rs).metrics
    assert m["mean_accepted_len"] == pytest.approx(1 + 9 / 5)


@pytest.mark.parametrize(
    ("name", "content", "flags", "needle"),
    [
        (  # the steps need 1 + 3 + 1 + 4 = 9 tokens but the request made 4
            "long.jsonl",
            json.dumps(response([2, 0, 3], [3, 3, 3], completion=4)),
            [],
            "line 1.per_step_accepted: step 2 starts at output position 5 but the request has "
            "4 tokens: the trajectory is longer than its request",
        ),
        (
            "neg.jsonl",
            '{"accepted": [2, -1], "k": 3}',
            [],
            "line 1.accepted.1: must be >= 0, got -1",
        ),
        (
            "kmis.jsonl",
            json.dumps(response([2, 0], [5, 3], completion=9)),
            [],
            "line 1.per_step_drafted.0: must be <= k (3), got 5",
        ),
        ("kflag.txt", PROM, ["--k", "4"], "k mismatch"),
        (
            "rate.json",
            json.dumps({**BENCH, "spec_decode_acceptance_rate": 37.5}),
            [],
            "spec_decode_acceptance_rate: 37.5% does not match",
        ),
        (
            "trace.csv",
            "TIMESTAMP,ContextTokens\n1,2\n",
            [],
            "--format: unknown acceptance metrics format",
        ),
        (
            "empty.txt",
            "# nothing here\n",
            ["--format", "prometheus"],
            "no vllm:spec_decode_num_drafts",
        ),
        (
            "lens.jsonl",
            "[3, 0, 2]\n",
            ["--bonus-included"],
            "line 1.1: a length with the bonus token is >= 1",
        ),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, name, content, flags, needle):
    src = tmp_path / name
    src.write_text(content + ("\n" if not content.endswith("\n") else ""))
    out = tmp_path / "acc.yaml"
    assert main(["acceptance", "import", str(src), "--out", str(out), *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectune: error:"), captured.err
    assert str(src) in lines[0] and needle in lines[0], lines[0]
    assert not out.exists()


def test_unreachable_url_is_one_line(capsys, tmp_path):
    code = main(
        ["acceptance", "import", "http://127.0.0.1:9/metrics", "--out", str(tmp_path / "o.yaml")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot fetch" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("trajectory", "needle"),
    [
        (
            {"k": 4, "output_tokens": 6, "accepted": [4, 4]},
            "acceptance.trajectories.0.accepted: step 1 starts at output position 6 but the "
            "request has 6 tokens: the trajectory is longer than its request",
        ),
        (
            {"form": "positions", "k": 4, "output_tokens": 3, "accepted": [1, 1, 1]},
            "acceptance.trajectories.0.accepted: one entry per output position 1..2 at most",
        ),
        ({"k": 4, "output_tokens": 20, "accepted": [2, -3]}, "accepted.1: must be >= 0, got -3"),
        ({"k": 4, "output_tokens": 20, "accepted": [5]}, "accepted.0: must be <= k (4), got 5"),
        (
            {"k": 4, "output_tokens": 20, "accepted": [1], "drafted": [6]},
            "drafted.0: must be <= k (4), got 6",
        ),
    ],
)
def test_bad_trajectory_in_a_profile_is_one_line(scenario_dir, capsys, trajectory, needle):
    import yaml
    from conftest import acceptance_profile_dict

    bad = acceptance_profile_dict()
    bad["acceptance"]["trajectories"] = [trajectory]
    (scenario_dir / "acc.yaml").write_text(yaml.safe_dump(bad))
    args = ["simulate", str(scenario_dir / "scenario.yaml"), "--set", "spec.num_spec_tokens=2"]
    args += ["--set", f"drafters.0.acceptance={{profile: {scenario_dir / 'acc.yaml'}}}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "acc.yaml" in err[0] and needle in err[0], err


def test_vllm_own_metrics_object_round_trips(tmp_path, capsys):
    """Contract test against vLLM's own code: its per-request accumulator's payload (what
    the API puts under metrics.speculative_decoding) imports, and vllm_trajectory reads it."""
    stats = pytest.importorskip("vllm.v1.metrics.stats")
    from spectune.simulator.acceptance_records import vllm_trajectory

    m = stats.RequestSpecDecodeMetrics.new(3)
    for a, d in [(2, 3), (0, 3), (3, 3), (1, 2)]:
        m.observe(num_draft_tokens=d, num_accepted=a, detailed=True)
    payload = m.to_dict()
    t = vllm_trajectory(payload, output_tokens=14, prompt_tokens=5)
    assert t.accepted == [2, 0, 3, 1] and t.drafted == [3, 3, 3, 2] and t.k == 3
    assert t.undrafted_steps == 14 - 1 - (3 + 1 + 4 + 2)
    line = {"usage": {"prompt_tokens": 5, "completion_tokens": 14}}
    line["metrics"] = {"speculative_decoding": payload}
    s, _ = run(tmp_path, capsys, "v.jsonl", json.dumps(line) + "\n")
    assert s["format"] == "vllm-requests"
    # the same counters as vLLM's own: mean acceptance length = 1 + accepted / drafting steps
    assert s["num_drafts"] == payload["num_spec_steps"] == 4
    assert 1 + 6 / s["num_drafts"] == pytest.approx(payload["mean_acceptance_length"])
