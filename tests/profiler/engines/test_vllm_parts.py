"""The vLLM adapter's parts that need no vLLM: the probe's composition of a scheduler
output, its log format read back, the configuration's arguments, counters, process-group
stops, and log error lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from spectune.profiler.engines import processes
from spectune.profiler.engines.vllm_config import VllmSettings, VllmSpec, check_model_dir
from spectune.profiler.engines.vllm_probe import FIELDS, composition
from spectune.profiler.engines.vllm_server import counter_delta, parse_spec_counters
from spectune.profiler.engines.vllm_steps import parse_line, read_steps
from spectune.profiler.engines.vllm_widths import FixedWidthProposer
from spectune.simulator.errors import InputError


def scheduler_output():
    """Two new requests (one a chunk at a cached prefix), one continuing prefill, two
    decodes (one verifying 3 drafts)."""
    return SimpleNamespace(
        num_scheduled_tokens={"a": 100, "b": 28, "c": 64, "d": 4, "e": 1},
        scheduled_spec_decode_tokens={"d": [7, 7, 7]},
        scheduled_new_reqs=[
            SimpleNamespace(req_id="a", num_computed_tokens=0),
            SimpleNamespace(req_id="b", num_computed_tokens=128),
        ],
        scheduled_cached_reqs=SimpleNamespace(
            req_ids=["c", "d", "e"],
            num_computed_tokens=[64, 300, 90],
            num_output_tokens=[0, 12, 3],
        ),
    )


def test_composition_splits_prefills_and_decodes():
    dec, dec_tokens, width, ctx, ctx_max, pf, pf_tokens, pf_ctx, drafts = composition(
        scheduler_output()
    )
    assert (dec, dec_tokens, width, ctx, ctx_max) == (2, 5, 4, 390, 300)
    assert (pf, pf_tokens, pf_ctx, drafts) == (3, 192, 192, 3)


def _line(t0, t1, fwd, draft, comp, calls=()):
    nums = [t0, t1, fwd, draft, *comp, fwd * 0.9]
    text = " ".join(str(x) for x in nums)
    return text + "".join(f" {n}:{ms}" for n, ms in calls) + "\n"


def test_step_log_reads_window_offset_and_periods(tmp_path):
    path = tmp_path / "steps"
    comp = [4, 16, 4, 400, 110, 0, 0, 0, 12]
    lines = [
        _line(10.000, 10.004, 3.0, 0.5, comp, [(20, 1.0), (4, 0.8)]),
        _line(10.005, 10.009, 3.0, 0.5, comp),  # 1 ms gap
        _line(10.010, 10.014, 3.0, 0.5, comp),  # 1 ms gap, then idle for 2 s
        _line(12.014, 12.018, 3.0, 0.5, comp),
    ]
    path.write_text("junk before\n" + "".join(lines) + "cut 1.0 2")
    offset = len("junk before\n")
    steps = read_steps(path, 10.0, 12.5, offset)
    assert len(steps) == 4
    assert steps.calls[0] == [(20, 1.0), (4, 0.8)]
    period = steps.period_ms()
    assert period[:2] == pytest.approx([5.0, 5.0])
    # idle after step 3 and no next step after 4: worker time + the typical 1 ms gap
    assert period[2:] == pytest.approx([5.0, 5.0])
    log = steps.step_log(10.0)
    assert log.batch == [4] * 4 and log.query == [4] * 4
    assert log.context == pytest.approx([100.0] * 4)
    assert log.overhead_ms == pytest.approx([1.5] * 4)
    assert len(read_steps(path, 10.0, 11.0, offset)) == 3
    assert parse_line("1 2 3") is None
    assert len(FIELDS) == 14
    assert steps.cpu_share() == pytest.approx(0.9)


def test_settings_give_matching_server_and_offline_arguments():
    spec = VllmSpec("ngram", 4, 2, 5)
    st = VllmSettings(model="/m", max_num_seqs=8, max_num_batched_tokens=2048, spec=spec)
    kw = st.engine_kwargs()
    args = st.serve_args("127.0.0.1", 8000, "x")
    assert kw["speculative_config"] == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    }
    assert args[args.index("--max-num-seqs") + 1] == "8"
    assert args[args.index("--max-num-batched-tokens") + 1] == "2048"
    assert "--no-enable-prefix-caching" in args and kw["enable_prefix_caching"] is False
    assert kw["kv_cache_memory_bytes"] == int(args[args.index("--kv-cache-memory-bytes") + 1])
    assert (
        st.key()
        == VllmSettings(model="/m", max_num_seqs=8, max_num_batched_tokens=2048, spec=spec).key()
    )
    assert st.key() != VllmSettings(model="/m", max_num_seqs=4, spec=spec).key()
    fixed = VllmSpec("fixed", 8).config()
    assert fixed["method"] == "custom_class" and fixed["model"].endswith("FixedWidthProposer")
    assert st.mode == "compiled" and VllmSettings(model="/m", enforce_eager=True).mode == "eager"


@pytest.mark.parametrize(
    "make",
    [
        lambda: VllmSpec("ngram", 0),
        lambda: VllmSpec("ngram", 3, 4, 2),
        lambda: VllmSpec("draft_model", 3),
        lambda: VllmSettings(model="/m", max_num_seqs=0),
        lambda: VllmSettings(model="/m", kv_cache_gib=0),
    ],
)
def test_bad_settings_are_input_errors(make):
    with pytest.raises(InputError):
        make()


def test_model_dir_checks(tmp_path):
    with pytest.raises(InputError, match="not a model directory"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no config\.json"):
        check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert check_model_dir(tmp_path) == str(tmp_path.resolve())


def test_fixed_width_proposer_reads_its_width_file(tmp_path, monkeypatch):
    width = tmp_path / "w"
    width.write_text("2")
    monkeypatch.setenv("SPECTUNE_VLLM_WIDTH_FILE", str(width))
    cfg = SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=5))
    p = FixedWidthProposer(cfg)
    assert p.propose([[1, 9], [], [4]], None, None) == [[9, 9], [], [4, 4]]
    time.sleep(0.01)
    width.write_text("9")  # capped at k
    os.utime(width, ns=(time.time_ns(), time.time_ns()))
    assert p.propose([[3]], None, None) == [[3] * 5]


METRICS = """# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
vllm:spec_decode_num_drafts_total{engine="0",model_name="x"} 434.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="x"} 1302.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="x"} 586.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="x",position="0"} 298.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="x",position="2"} 132.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="x",position="1"} 156.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="x"} 1.7e9
"""


def test_prometheus_counters_and_deltas():
    c = parse_spec_counters(METRICS)
    assert c["vllm:spec_decode_num_drafts"] == 434.0
    assert c["vllm:spec_decode_num_accepted_tokens_per_pos"] == [298.0, 156.0, 132.0]
    assert "vllm:spec_decode_num_drafts_created" not in c
    before = {
        "vllm:spec_decode_num_drafts": 400.0,
        "vllm:spec_decode_num_accepted_tokens_per_pos": [290.0],
    }
    d = counter_delta(before, c)
    assert d["vllm:spec_decode_num_drafts"] == 34.0
    assert d["vllm:spec_decode_num_accepted_tokens_per_pos"] == [8.0, 156.0, 132.0]


@pytest.mark.parametrize(
    "log, want",
    [
        (
            "(APIServer pid=1) INFO 11-29 19:00:01 [api.py:1] start\n"
            "Traceback (most recent call last):\n"
            "OSError: [Errno 98] Address already in use\n",
            "OSError: [Errno 98] Address already in use",
        ),
        (
            "Triton is installed, but doesn't include CPU backend\n"
            "(APIServer pid=7) ERROR 11-29 19:00:02 [x.py:3] pydantic_core._pydantic_core."
            "ValidationError: 1 validation error for ModelConfig\n"
            "  Value error, Invalid repository ID or local directory specified\n",
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
        ),
        ("all fine\n", None),
    ],
)
def test_last_error_line(tmp_path, log, want):
    p = tmp_path / "log"
    p.write_text(log)
    assert processes.last_error_line(p) == want


def test_stop_group_leaves_no_process_of_the_tree(tmp_path):
    # A parent that ignores SIGINT and SIGTERM, with two children that do too: only the
    # group's SIGKILL ends it; no process of the group may survive.
    script = (
        "import signal, subprocess, sys, time\n"
        "for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import signal,time\\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\\nsignal.signal(signal.SIGTERM, "
        "signal.SIG_IGN)\\ntime.sleep(60)']) for _ in range(2)]\n"
        "time.sleep(60)\n"
    )
    proc = processes.spawn([sys.executable, "-c", script], tmp_path / "log", dict(os.environ))
    deadline = time.monotonic() + 10
    while len(processes.group_pids(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = processes.group_pids(proc.pid)
    assert len(pids) == 3
    t0 = time.monotonic()
    processes.stop_group(proc, grace_s=0.5)
    assert processes.group_pids(proc.pid) == []
    assert time.monotonic() - t0 < 15
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ports():
    port = processes.free_port()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert processes.port_in_use("127.0.0.1", port)


def test_sigterm_becomes_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt), processes.sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is not None


def test_probe_module_imports_without_vllm_when_not_asked(monkeypatch):
    monkeypatch.delenv("SPECTUNE_VLLM_STEPLOG", raising=False)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import spectune.profiler.engines.vllm_probe as p; print(p.FIELDS[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "t0"
