"""Bad-input campaign, part 2: bad files and paths rather than bad values. Special files
(a FIFO must not hang a read or a write), folders, unreadable files, negative seeds,
unwritable outputs checked before the work starts, and ``--storage`` files: a torn journal
is repaired (partial last record dropped, the rest kept, said on stderr), anything that is
not a journal refused untouched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from badinput import assert_one_line, expect_error, run_subprocess, snapshot

from spectune.tuner.study import make_storage


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "pipe"
    os.mkfifo(p)
    return p


def _point(scenario_dir: Path, field: str, value: str) -> list[str]:
    return ["simulate", str(scenario_dir / "scenario.yaml"), "--set", f"{field}={value}"]


# ------------------------------------------------------------------ special files (subprocess)


@pytest.mark.parametrize(
    ("role", "needles"),
    [
        ("scenario", ["pipe", "FIFO"]),
        ("workload.trace", ["workload.trace", "FIFO"]),
        ("target.latency_profile", ["pipe", "FIFO"]),
        ("drafters.0.acceptance.profile", ["pipe", "FIFO"]),
        ("workload.tokenizer", ["workload.tokenizer", "FIFO"]),
    ],
)
def test_fifo_input_is_refused_not_read(
    scenario_dir: Path, fifo: Path, role: str, needles: list[str]
) -> None:
    if role == "scenario":
        argv = ["simulate", str(fifo)]
    else:
        argv = _point(scenario_dir, role, str(fifo))
        if role == "workload.tokenizer":
            (scenario_dir / "t.jsonl").write_text('{"prompt": "a", "output": "b"}\n')
            argv += ["--set", f"workload.trace={scenario_dir / 't.jsonl'}"]
    assert_one_line(run_subprocess(argv, timeout=60), needles)


def test_fifo_as_storage_is_refused(scenario_dir: Path, fifo: Path) -> None:
    argv = ["recommend", str(scenario_dir / "scenario.yaml"), "--storage", str(fifo)]
    assert_one_line(run_subprocess([*argv, "--trials", "2"], timeout=60), ["--storage", "pipe"])


def test_fifo_as_output_is_refused(fifo: Path) -> None:
    argv = ["roofline", "--device", "h100-sxm", "--model", "llama-3.1-8b", "--out", str(fifo)]
    assert_one_line(run_subprocess(argv, timeout=60), ["--out", "FIFO"])


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_as_scenario_is_refused(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(capsys, ["simulate", device], [device, "character device"])


# ------------------------------------------------------------------ folders, unreadable, binary


@pytest.mark.parametrize(
    "role", ["scenario", "workload.trace", "target.latency_profile", "drafters.0.latency_profile"]
)
def test_folder_given_as_file(
    scenario_dir: Path, role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scenario_dir / "a-folder"
    folder.mkdir()
    argv = ["simulate", str(folder)] if role == "scenario" else _point(scenario_dir, role, folder)
    expect_error(capsys, argv, ["a-folder", "folder"], scenario_dir)


@pytest.fixture
def shared_dir(tmp_path: Path, scenario_dir: Path) -> Path:
    """The scenario folder copied where an unprivileged user can traverse it."""
    d = Path(os.environ.get("TMPDIR", "/tmp")) / f"spectune-bad-{os.getpid()}-{tmp_path.name}"
    shutil.copytree(scenario_dir, d)
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name", ["scenario.yaml", "target.yaml", "acc.yaml"])
def test_unreadable_file_is_permission_denied(shared_dir: Path, name: str) -> None:
    (shared_dir / name).chmod(0o000)
    proc = run_subprocess(["simulate", shared_dir / "scenario.yaml"], user="nobody")
    assert_one_line(proc, [name, "permission denied"])


def test_unreadable_trace_is_permission_denied(shared_dir: Path) -> None:
    (shared_dir / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    (shared_dir / "t.csv").chmod(0o000)
    proc = run_subprocess(
        ["simulate", shared_dir / "scenario.yaml", "--set", "workload.trace=t.csv"], user="nobody"
    )
    assert_one_line(proc, ["t.csv", "permission denied"])


def test_binary_profile(scenario_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (scenario_dir / "target.yaml").write_bytes(bytes(range(256)) * 4)
    expect_error(capsys, ["simulate", scenario_dir / "scenario.yaml"], ["target.yaml", "UTF-8"])


# ------------------------------------------------------------------ seeds


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "{s}", "--seed", "-1"],
        ["recommend", "{s}", "--seed", "-5", "--trials", "2"],
        ["plan", "{s}", "--seed", "-1"],
        ["validate", "{s}", "--seed", "-2"],
        ["generate", "--target", "ctrl:0.01", "--drafter", "ngram", "--prompts", "{s}", "--seed",
         "-1"],
        ["profile", "latency", "--model", "ctrl:0.01", "--seed", "-3"],
        ["simulate", "{s}", "--seed", str(2**64)],
    ],
)  # fmt: skip
def test_bad_seed(scenario_dir: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    s = str(scenario_dir / "scenario.yaml")
    expect_error(capsys, [a.replace("{s}", s) for a in argv], ["--seed"], scenario_dir)


# ------------------------------------------------------------------ outputs, before the work


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["recommend", "{s}", "--plot", "{f}/x.png", "--trials", "2"], ["--plot", "not a folder"]),
        (["plan", "{s}", "--plot", "{d}"], ["--plot", "is a folder"]),
        (["roofline", "--device", "h100-sxm", "--model", "llama-3.1-8b", "--out", "{d}"],
         ["--out", "is a folder"]),
        (["roofline", "--all", "--out-dir", "{f}"], ["--out-dir", "is a file"]),
        (["validate", "{s}", "--quick", "--report", "{f}"], ["--report", "is a file"]),
        (["profile", "latency", "--model", "ctrl:0.01", "--out", "/proc/spectune/x.yaml"],
         ["--out", "not writable"]),
        (["profile", "train-demo", "--out", "{f}"], ["--out", "is a file"]),
        (["profile", "acceptance", "--target", "ctrl:0.01", "--drafter", "ngram", "--prompts",
          "{s}", "--out", "{f}/a.yaml"], ["--out", "not a folder"]),
    ],
)  # fmt: skip
def test_unwritable_output_fails_before_work(
    scenario_dir: Path, argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    f = scenario_dir / "target.yaml"  # an existing file: must stay as it is
    d = scenario_dir / "out-folder"
    d.mkdir()
    sub = {"{s}": str(scenario_dir / "scenario.yaml"), "{f}": str(f), "{d}": str(d)}
    full = []
    for a in argv:
        for k, v in sub.items():
            a = a.replace(k, v)
        full.append(a)
    expect_error(capsys, full, needles, scenario_dir)


# ------------------------------------------------------------------ --storage journals


def _journal_with_trials(path: Path, n: int = 3) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=make_storage(str(path)), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)


def test_torn_journal_keeps_complete_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    path = tmp_path / "study.log"
    _journal_with_trials(path)
    good = path.read_bytes()
    path.write_bytes(good + b'{"op_code": 5, "worker_id": "x", "trial_id": 3, "param')  # torn
    storage = make_storage(str(path))
    err = capsys.readouterr().err
    assert "dropped a partial last record" in err and err.count("\n") == 1
    assert path.read_bytes() == good
    study = optuna.load_study(storage=storage, study_name="s")
    assert len(study.trials) == 3
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # resumes cleanly
    again = optuna.load_study(storage=make_storage(str(path)), study_name="s")
    assert len(again.trials) == 5


def test_torn_first_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "study.log"
    path.write_bytes(b'{"op_code": 0, "wor')
    make_storage(str(path))
    assert "dropped a partial last record" in capsys.readouterr().err
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"timestamp,prompt_tokens,output_tokens\n0,5,6\n", "line 1"),
        (b'{"prompt_tokens": 5, "output_tokens": 6}\n', "line 1"),
        (b"SQLite format 3\x00" + bytes(100), "sqlite:///"),
        (b"hello", "last line"),
        (b"schema: spectune/scenario/v1\n", "line 1"),
    ],
    ids=["csv", "jsonl trace", "sqlite", "one word", "yaml"],
)
def test_non_journal_storage_is_refused_untouched(
    scenario_dir: Path, content: bytes, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scenario_dir / "precious.dat"
    path.write_bytes(content)
    before = snapshot(scenario_dir)
    argv = ["recommend", scenario_dir / "scenario.yaml", "--storage", path, "--trials", "2"]
    expect_error(capsys, argv, ["--storage", "precious.dat", "not an Optuna journal", needle])
    assert snapshot(scenario_dir) == before
    assert not Path(str(path) + ".lock").exists()


def test_journal_json_lines_must_be_records(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    path.write_text(json.dumps({"op_code": 0}) + "\n" + json.dumps([1, 2]) + "\n")
    with pytest.raises(Exception, match="line 2"):
        make_storage(str(path))
    assert path.read_text().count("\n") == 2
