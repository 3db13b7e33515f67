"""`spectune roofline`: catalogue models and config.json files, drafters, dtypes, both model
kinds, profile output, --list, --all, bad input -> exit 2 with one line."""

from __future__ import annotations

import json

import pytest
from hfconfigs import QWEN25_7B

from spectune.cli import main
from spectune.simulator.costmodel.catalog import CATALOG
from spectune.simulator.latency import LatencyModel
from spectune.simulator.schema import load_latency_profile


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["roofline", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def config(tmp_path, cfg: dict, name: str = "model") -> str:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d / "config.json")


def test_table(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "h100-sxm", "--model", "llama-3.1-8b")
    assert rc == 0
    assert "Llama-3.1-8B on NVIDIA H100 SXM5 80GB x1 (bf16 weights, bf16 KV, calibrated)" in out
    assert "ctx 2048" in out and "memory-bound" in out and "verify-to-decode" in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith("256 ")]) == 1


def test_json_numbers_grow_with_batch_context_and_verify_tokens(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "a100-80gb", "--model", "qwen3-8b", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["device"] == "a100-80gb" and data["tp"] == 1 and data["written"] == []
    t = data["decode_step_ms"]
    assert t["1"]["512"] < t["1"]["32768"] < t["256"]["32768"]
    r = data["verify_ratio"]
    assert 1.0 <= r["1"]["3"] < r["64"]["3"] and r["64"]["1"] <= r["64"]["7"]
    assert data["batch1_context2048"]["gemm_bound"] == "memory"


def test_any_config_json_and_its_dtype(tmp_path, capsys) -> None:
    path = config(tmp_path, QWEN25_7B, "Qwen2.5-7B")
    rc, out, _ = run(capsys, "--device", "h100-sxm", "--config", path, "--json")
    bf16 = json.loads(out)
    rc2, out, _ = run(capsys, "--device", "h100-sxm", "--config", path, "--dtype", "fp8", "--json")
    fp8 = json.loads(out)
    assert rc == rc2 == 0 and bf16["model"] == "qwen2.5-7b" and fp8["dtype"] == "fp8"
    assert fp8["decode_step_ms"]["1"]["512"] < 0.8 * bf16["decode_step_ms"]["1"]["512"]
    # an FP8 checkpoint's quantization_config sets the default dtype
    q = config(tmp_path, {**QWEN25_7B, "quantization_config": {"quant_method": "fp8"}}, "q")
    rc, out, _ = run(capsys, "--device", "h100-sxm", "--config", q, "--json")
    assert json.loads(out)["dtype"] == "fp8"


def test_drafters_eagle3_config_mtp_and_parallel(tmp_path, capsys) -> None:
    e3 = config(tmp_path, CATALOG["eagle3-llama-3.1-8b"].config, "eagle3")
    rc, out, _ = run(
        capsys, "--device", "h200", "--model", "llama-3.1-8b", "--drafter-config", e3, "--json"
    )
    d = json.loads(out)["drafter"]
    assert rc == 0 and d["kind"] == "eagle3"
    cost = d["step_cost_ratio"]
    assert cost["1"]["1"] < 0.15 and cost["1"]["7"] > 5 * cost["1"]["1"]  # k passes
    glm = config(tmp_path, CATALOG["glm-4.5-air"].config, "glm")
    rc, out, _ = run(
        capsys, "--device", "h100-sxm", "--config", glm, "--tp", "4", "--drafter", "mtp", "--json"
    )
    assert rc == 0 and json.loads(out)["drafter"]["kind"] == "mtp"
    rc, out, _ = run(
        capsys,
        "--device",
        "h100-sxm",
        "--model",
        "llama-3.1-8b",
        "--drafter",
        "llama-3.2-1b",
        "--drafter-kind",
        "parallel",
        "--json",
    )
    par = json.loads(out)["drafter"]["step_cost_ratio"]["1"]
    assert rc == 0 and par["7"] < 1.2 * par["1"]  # one pass for all k: nearly flat in k


def test_out_writes_loadable_profiles(tmp_path, capsys) -> None:
    path, dpath = tmp_path / "sub" / "p.yaml", tmp_path / "d.yaml"
    rc, out, _ = run(
        capsys,
        "--device",
        "l40s",
        "--model",
        "llama-3.1-70b-tp8",
        "--drafter",
        "eagle3-llama-3.1-70b",
        "--out",
        str(path),
        "--drafter-out",
        str(dpath),
    )
    assert rc == 0 and f"wrote {path}" in out and f"wrote {dpath}" in out
    prof = load_latency_profile(path)
    assert prof.provenance.kind == "calibrated" and prof.provenance.parameters
    assert prof.device.count == 8 and prof.model.tensor_parallel == 8
    assert LatencyModel.from_path(path).forward_ms(1, 1, 100) > 0
    assert load_latency_profile(dpath).model.kind == "eagle3"


def test_roofline_kind_stays_available_and_is_faster_than_calibrated(tmp_path, capsys) -> None:
    path = tmp_path / "r.yaml"
    argv = ("--device", "h100-sxm", "--model", "llama-3.1-8b", "--json")
    rc, out, _ = run(capsys, *argv, "--model-kind", "roofline", "--out", str(path))
    roof = json.loads(out)
    rc2, out, _ = run(capsys, *argv)
    cal = json.loads(out)
    assert rc == rc2 == 0 and roof["model_kind"] == "roofline"
    assert roof["decode_step_ms"]["1"]["512"] < cal["decode_step_ms"]["1"]["512"]
    assert roof["verify_ratio"]["64"]["3"] < cal["verify_ratio"]["64"]["3"]
    assert load_latency_profile(path).provenance.kind == "roofline"


def test_tp_flag_and_slug_agree(capsys) -> None:
    rc, out, _ = run(capsys, "--device", "h200", "--model", "llama-3.1-70b", "--tp", "4", "--json")
    assert rc == 0 and json.loads(out)["tp"] == 4
    rc, _, err = run(capsys, "--device", "h200", "--model", "llama-3.1-70b-tp4", "--tp", "8")
    assert rc == 2 and "says tp 4 but --tp is 8" in err


def test_list(capsys) -> None:
    rc, out, _ = run(capsys, "--list")
    assert rc == 0
    for slug in ("h100-sxm", "b200", "qwen3-30b-a3b", "eagle3-llama-3.1-70b", "int4-weight"):
        assert slug in out
    rc, out, _ = run(capsys, "--list", "--json")
    data = json.loads(out)
    assert {d["slug"] for d in data["devices"]} == {"h100-sxm", "h200", "a100-80gb", "l40s", "b200"}
    assert "fp8" not in next(d for d in data["devices"] if d["slug"] == "a100-80gb")["dtypes"]


@pytest.mark.slow
def test_all_regenerates_every_shipped_profile(tmp_path, capsys) -> None:
    rc, out, _ = run(capsys, "--all", "--out-dir", str(tmp_path), "--json")
    assert rc == 0
    rows = json.loads(out)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml"))
    assert len(files) == len(rows) >= 60
    assert "h100-sxm/llama-3.1-8b.yaml" in files and "b200/qwen3-30b-a3b.yaml" in files
    assert all(r["cv_error_pct"] < 5 for r in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "h100", "--model", "llama-3.1-8b"], "unknown device 'h100' (known: h100-sxm"),
        (
            ["--device", "h100-sxm", "--model", "gpt-4"],
            "unknown model 'gpt-4' (known: llama-3.1-8b",
        ),
        (["--device", "h100-sxm"], "need --device and --model or --config"),
        (["--device", "h100-sxm", "--model", "llama-3.1-70b"], "do not fit"),
        (["--device", "h100-sxm", "--model", "llama-3.1-8b", "--tp", "0"], "--tp: must be >= 1"),
        (
            ["--device", "a100-80gb", "--model", "llama-3.1-8b", "--dtype", "fp8"],
            "--dtype: NVIDIA A100 SXM4 80GB has no fp8 tensor cores (it runs bf16)",
        ),
        (["--device", "h100-sxm", "--model", "llama-3.1-8b", "--dtype", "int3"], "unknown dtype"),
        (
            ["--device", "h100-sxm", "--model", "qwen3-8b", "--drafter", "mtp"],
            "num_nextn_predict_layers: this config has no MTP module",
        ),
        (["--device", "h100-sxm", "--config", "/no/such/config.json"], "file not found"),
        (["--all"], "--all needs --out-dir"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_unsupported_architecture_names_the_field(tmp_path, capsys) -> None:
    path = config(tmp_path, {**QWEN25_7B, "model_type": "qwen3_next"}, "next")
    rc, out, err = run(capsys, "--device", "h100-sxm", "--config", path)
    assert rc == 2 and out == ""
    assert f"{path}: model_type: architecture 'qwen3_next' is not supported" in err
