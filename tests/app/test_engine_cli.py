"""``--engine vllm`` on the command line: bad input is one line and exit 2 (vLLM missing,
no model, a model vLLM cannot load, a port in use), and Ctrl-C leaves no vLLM process
behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from enginekit import wait_for_parsers

from spectune.cli import main
from spectune.profiler.engines import processes, vllm_config
from spectune.profiler.engines.vllm_config import VllmSettings, vllm_version
from spectune.profiler.engines.vllm_server import VllmServer
from spectune.simulator.errors import InputError

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "models" / "stdlib-byte-target"
PROMPTS = REPO / "examples" / "prompts" / "stdlib.txt"
needs_vllm = pytest.mark.skipif(
    os.environ.get("SPECTUNE_SKIP_VLLM") == "1", reason="SPECTUNE_SKIP_VLLM=1"
)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("spectune: error:")
    return err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "examples/local-cpu.yaml", "--engine", "vllm"],
        ["profile", "latency", "--engine", "vllm", "--model", str(TARGET)],
        [
            "profile",
            "acceptance",
            "--engine",
            "vllm",
            "--target",
            str(TARGET),
            "--drafter",
            "ngram",
            "--prompts",
            str(PROMPTS),
        ],
    ],
)
def test_vllm_not_installed_says_how_to_install(argv, monkeypatch, capsys):
    monkeypatch.setattr(vllm_config, "vllm_version", lambda: None)
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "vLLM is not installed" in line and "[vllm]" in line


def test_model_directory_without_config(tmp_path, capsys):
    assert main(["profile", "latency", "--engine", "vllm", "--model", str(tmp_path)]) == 2
    assert "no config.json" in one_error_line(capsys)
    assert main(["profile", "latency", "--engine", "vllm", "--model", str(tmp_path / "x")]) == 2
    assert "not a model directory" in one_error_line(capsys)


def test_port_in_use_is_refused_before_starting(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = VllmServer(VllmSettings(model=str(TARGET)), tmp_path, port=port)
        if vllm_version() is None:
            pytest.skip("vLLM not installed")
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is in use"):
            server.start()
        assert server.proc is None


@pytest.mark.slow
@needs_vllm
def test_a_model_vllm_cannot_load_is_one_line(tmp_path, capsys):
    # a config spectune reads fine, weights vLLM cannot load
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text((TARGET / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    t0 = time.monotonic()
    code = main(
        [
            "profile",
            "latency",
            "--engine",
            "vllm",
            "--model",
            str(bad),
            "--eager",
            "--out",
            str(tmp_path / "p.yaml"),
            "--no-progress",
        ]
    )
    assert code == 2
    line = one_error_line(capsys)
    assert "vLLM server exited during start-up" in line and "log:" in line
    assert time.monotonic() - t0 < 240


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.slow
@pytest.mark.live_timing  # its deadlines assume the CPU is not shared with the parsers
@needs_vllm
def test_ctrl_c_mid_run_leaves_no_vllm_process(tmp_path):
    wait_for_parsers()
    cmd = [
        sys.executable,
        "-m",
        "spectune.cli",
        "profile",
        "acceptance",
        "--engine",
        "vllm",
        "--target",
        str(TARGET),
        "--drafter",
        "ngram",
        "--k",
        "4",
        "--prompts",
        str(PROMPTS),
        "--max-new-tokens",
        "1500",
        "--eager",
        "--out",
        str(tmp_path / "acc.yaml"),
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    engine: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        engine = {
            p
            for p in processes.descendants(proc.pid)
            if "VLLM" in Path(f"/proc/{p}/comm").read_text(errors="replace")
        }
        steps = list((tmp_path / ".cache" / "spectune-vllm").glob("*.steps"))
        if len(engine) >= 2 and steps and steps[0].stat().st_size > 20_000:
            break  # the engine core and its worker exist, and requests are being served
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    assert len(engine) >= 2
    tree = set(processes.descendants(proc.pid))
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # A failed check must not leave an engine serving through the rest of the suite.
        for p in [*tree, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"no exit within 60 s of Ctrl-C: {err.decode()[-2000:]}")
    assert proc.returncode == 130, err.decode()[-2000:]
    time.sleep(1)
    survivors = [p for p in tree if _alive(p)]
    assert survivors == [], survivors
