"""`spectune roofline`: table, JSON, profile output, --list, --all, bad input -> exit 2."""

from __future__ import annotations

import json

import pytest

from spectune.cli import main
from spectune.simulator.latency import LatencyModel
from spectune.simulator.schema import load_latency_profile


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["roofline", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_table(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "h100-sxm", "--model", "llama-3.1-8b")
    assert rc == 0
    assert "Llama-3.1-8B on NVIDIA H100 SXM5 80GB x1" in out
    assert "ctx 2048" in out and "memory-bound" in out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("256 ")]
    assert len(lines) == 1


def test_json_numbers_grow_with_batch_and_context(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "a100-80gb", "--model", "llama-2-7b", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["device"] == "a100-80gb" and data["tp"] == 1 and data["written"] is None
    t = data["decode_step_ms"]
    assert t["1"]["512"] < t["1"]["32768"] < t["256"]["32768"]
    assert t["1"]["512"] < t["64"]["512"]
    assert data["batch1_context2048"]["gemm_bound"] == "memory"


def test_out_writes_loadable_profile(tmp_path, capsys) -> None:
    path = tmp_path / "sub" / "p.yaml"
    rc, out, _ = run(capsys, "--device", "l40s", "--model", "llama-3.1-70b-tp8", "--out", str(path))
    assert rc == 0 and f"wrote {path}" in out
    prof = load_latency_profile(path)
    assert prof.provenance.kind == "roofline"
    assert prof.device.count == 8 and prof.model.tensor_parallel == 8
    assert LatencyModel.from_path(path).forward_ms(1, 1, 100) > 0


def test_tp_flag_and_slug_agree(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "h200", "--model", "llama-3.1-70b", "--tp", "4", "--json")
    assert rc == 0 and json.loads(out)["tp"] == 4
    rc, _, err = run(capsys, "--device", "h200", "--model", "llama-3.1-70b-tp4", "--tp", "8")
    assert rc == 2 and "says tp 4 but --tp is 8" in err


def test_list(capsys) -> None:
    rc, out, _ = run(capsys, "--list")
    assert rc == 0
    for slug in ("h100-sxm", "h200", "a100-80gb", "l40s", "eagle-llama-3.1-8b", "llama-3.2-1b"):
        assert slug in out
    rc, out, _ = run(capsys, "--list", "--json")
    assert {d["slug"] for d in json.loads(out)["devices"]} == {
        "h100-sxm",
        "h200",
        "a100-80gb",
        "l40s",
    }


def test_all_regenerates_every_shipped_profile(tmp_path, capsys) -> None:
    rc, out, _ = run(capsys, "--all", "--out-dir", str(tmp_path), "--json")
    assert rc == 0
    rows = json.loads(out)
    assert len(rows) == 24
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml"))
    assert len(files) == 24
    assert "h100-sxm/llama-3.1-8b.yaml" in files and "l40s/llama-3.1-70b-tp4.yaml" in files
    assert all(r["cv_error_pct"] < 5 for r in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "h100", "--model", "llama-3.1-8b"], "unknown device 'h100' (known: h100-sxm"),
        (
            ["--device", "h100-sxm", "--model", "gpt-4"],
            "unknown model 'gpt-4' (known: llama-3.1-8b",
        ),
        (["--device", "h100-sxm"], "need --device and --model"),
        (["--device", "h100-sxm", "--model", "llama-3.1-70b"], "do not fit"),
        (["--device", "h100-sxm", "--model", "llama-3.1-8b", "--tp", "0"], "--tp: must be >= 1"),
        (["--all"], "--all needs --out-dir"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""
