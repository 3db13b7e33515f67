"""Workload files beyond the Azure CSV: lengths-only CSV, JSONL, JSON records, ShareGPT,
text through a tokenizer; timestamps in every unit (simulator/trace_readers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, scenario_dict, write_yaml

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import load_scenario
from spectune.simulator.trace_readers import TraceOptions
from spectune.simulator.workload import build_requests, read_trace

EXAMPLES = REPO / "examples" / "workloads"


def _rngs() -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng(0), np.random.default_rng(1)


def test_jsonl_with_timestamps() -> None:
    tr = read_trace(EXAMPLES / "requests.jsonl")
    assert tr.prompt_tokens.tolist() == [812, 1530, 240, 3071, 655, 1102]
    assert tr.output_tokens.tolist() == [156, 88, 402, 64, 230, 118]
    assert tr.time_s is not None and tr.time_s.tolist() == pytest.approx(
        [0.0, 0.41, 0.97, 1.62, 2.05, 2.88]
    )


def test_lengths_only_csv_has_no_times() -> None:
    tr = read_trace(EXAMPLES / "lengths.csv")
    assert tr.time_s is None
    assert tr.prompt_tokens.tolist()[:3] == [812, 1530, 240]


def test_epoch_milliseconds_column_suffix() -> None:
    tr = read_trace(EXAMPLES / "epoch-ms.csv")
    assert tr.time_s is not None and tr.time_s.tolist() == pytest.approx([0, 0.41, 0.97, 1.62])


@pytest.mark.parametrize(
    ("stamps", "unit", "want"),
    [
        (["1700000000", "1700000002"], "auto", [0.0, 2.0]),  # Unix seconds, not years
        (["1700000000000", "1700000002500"], "auto", [0.0, 2.5]),  # Unix ms
        (["1700000000000000", "1700000000500000"], "auto", [0.0, 0.5]),  # Unix us
        (["1700000000000000000", "1700000001000000000"], "auto", [0.0, 1.0]),  # Unix ns
        (["0", "1.5"], "auto", [0.0, 1.5]),  # relative seconds
        (["0", "1500"], "ms", [0.0, 1.5]),  # declared
        (["2023-11-16T18:17:03Z", "2023-11-16T18:17:05.5Z"], "auto", [0.0, 2.5]),
        (["2023-11-16 18:17:03+01:00", "2023-11-16 18:17:04+01:00"], "auto", [0.0, 1.0]),
    ],
)
def test_timestamp_units(tmp_path: Path, stamps: list[str], unit: str, want: list[float]) -> None:
    p = tmp_path / "t.csv"
    p.write_text("timestamp,prompt_tokens,output_tokens\n" + "".join(f"{s},5,6\n" for s in stamps))
    tr = read_trace(p, TraceOptions(timestamp_unit=unit))
    assert tr.time_s is not None and tr.time_s.tolist() == pytest.approx(want)


def test_whole_second_gaps_warn_about_milliseconds(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("timestamp,prompt_tokens,output_tokens\n0,5,6\n250,5,6\n600,5,6\n")
    tr = read_trace(p)
    assert any("timestamp_unit: ms" in w for w in tr.warnings)


def test_sharegpt_first_user_turn_and_reply() -> None:
    tr = read_trace(EXAMPLES / "sharegpt.json", TraceOptions(tokenizer="bytes"))
    data = json.loads((EXAMPLES / "sharegpt.json").read_text())
    want_p = [len(data[i]["conversations"][j]["value"].encode()) for i, j in ((0, 0), (1, 1))]
    assert tr.prompt_tokens.tolist()[:2] == want_p
    assert tr.time_s is None
    assert len(tr.prompt_tokens) == 3  # the conversation without a reply is skipped
    assert any("1 conversation(s)" in w for w in tr.warnings)


def test_text_without_tokenizer_is_approximated_and_says_so() -> None:
    tr = read_trace(EXAMPLES / "prompts-text.jsonl")
    first = json.loads((EXAMPLES / "prompts-text.jsonl").read_text().splitlines()[0])
    assert tr.prompt_tokens[0] == -(-len(first["prompt"]) // 4)
    assert any("approximated" in w for w in tr.warnings)


def test_hf_tokenizer_json_counts(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tk = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.save(str(tmp_path / "tokenizer.json"))
    p = tmp_path / "w.jsonl"
    p.write_text(json.dumps({"prompt": "hello world hello", "output": "world"}) + "\n")
    tr = read_trace(p, TraceOptions(tokenizer=str(tmp_path / "tokenizer.json")))
    assert tr.prompt_tokens.tolist() == [3] and tr.output_tokens.tolist() == [1]


def test_lengths_only_trace_takes_scenario_arrivals(scenario_dir: Path) -> None:
    sc = scenario_dict()
    sc["workload"] = {
        "mode": "open",
        "trace": str(EXAMPLES / "lengths.csv"),
        "arrival": {"process": "gamma", "rate_per_s": 4.0, "cv": 2.0},
    }
    write_yaml(scenario_dir / "scenario.yaml", sc)
    rs = load_scenario(scenario_dir / "scenario.yaml")
    reqs = build_requests(rs.scenario.workload, rs.trace_path, *_rngs())
    assert reqs.num_requests == 6 and reqs.arrival_s is not None
    assert reqs.arrival_s[0] == 0.0 and np.all(np.diff(reqs.arrival_s) >= 0)


def test_lengths_only_trace_in_open_mode_needs_arrivals(scenario_dir: Path) -> None:
    sc = scenario_dict()
    sc["workload"] = {"mode": "open", "trace": str(EXAMPLES / "lengths.csv")}
    write_yaml(scenario_dir / "scenario.yaml", sc)
    rs = load_scenario(scenario_dir / "scenario.yaml")
    with pytest.raises(InputError, match=r"workload\.arrival: is required"):
        build_requests(rs.scenario.workload, rs.trace_path, *_rngs())


def test_azure_csv_reads_as_before() -> None:
    path = REPO / "traces" / "azure_llm_2023_code.csv"
    rows = [ln.split(",") for ln in path.read_text().splitlines()[1:] if ln.strip()]
    tr = read_trace(path)
    assert len(tr.prompt_tokens) == len(rows)
    assert tr.prompt_tokens[-1] == int(rows[-1][1]) and tr.output_tokens[-1] == int(rows[-1][2])
    stamps = np.array([r[0] for r in rows], dtype="datetime64[ns]")
    want = (stamps - stamps[0]).astype(np.int64) * 1e-9
    assert tr.time_s is not None and np.array_equal(tr.time_s, want)
    assert tr.warnings == ()


def test_sharegpt_example_scenario_simulates() -> None:
    from spectune.simulator import simulate

    rs = load_scenario(REPO / "examples" / "sharegpt-h100.yaml")
    m = simulate(rs, seed=0).metrics
    assert m["num_requests"] == 3
    assert m["throughput_tok_per_s"] > 0
