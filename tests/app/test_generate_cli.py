"""``spectune generate`` end to end on tiny saved checkpoints, and its bad-input exits."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from spectune.cli import main  # noqa: E402
from spectune.profiler.runtime.checkpoint import save_checkpoint  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import random_model  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _cfg(vocab: int, layers: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
    )


def _save(path, vocab: int, layers: int, seed: int, byte_level: bool):
    save_checkpoint(random_model(_cfg(vocab, layers), seed=seed), path)
    if byte_level:
        cfg_file = path / "config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["spectune_tokenizer"] = "bytes"
        cfg_file.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "target": _save(root / "target", 256, 3, 0, True),
        "draft": _save(root / "draft", 256, 1, 1, True),
        "ids_model": _save(root / "ids", 50, 2, 2, False),
        "small_vocab": _save(root / "v50", 50, 1, 3, False),
        "root": root,
    }


@pytest.fixture(scope="module")
def text_prompts(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "p.txt"
    p.write_text("def f(x):\nimport os\nclass A(B):\n")
    return p


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["generate", "--threads", "1", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_run_with_baseline_is_lossless(capsys, ckpts, text_prompts):
    code, out, _ = _run(
        capsys,
        "--target", ckpts["target"], "--drafter", ckpts["draft"], "--k", "3",
        "--prompts", text_prompts, "--max-new-tokens", "12", "--batch", "2",
        "--baseline", "--json",
    )  # fmt: skip
    assert code == 0
    r = json.loads(out)
    assert r["num_prompts"] == 3 and r["generated_tokens"] == 36
    assert all(len(o["ids"]) == 12 and isinstance(o["text"], str) for o in r["outputs"])
    assert r["baseline"]["outputs_identical"] is True
    st = r["stats"]
    assert st["num_draft_tokens"] > 0 and st["mean_accepted_len"] >= 1.0
    assert len(st["accepted_per_position"]) == 3
    assert r["tok_per_s"] > 0 and st["verify_ms_per_step"] > 0


def test_text_report_tree_self_and_ngram(capsys, ckpts, text_prompts, tmp_path):
    code, out, _ = _run(
        capsys, "--target", ckpts["target"], "--drafter", "self:1", "--tree", "[[0],[1],[0,0]]",
        "--prompts", text_prompts, "--max-new-tokens", "8",
    )  # fmt: skip
    assert code == 0
    assert "tok/s" in out and "mean accepted length" in out and "[2] " in out
    tree_file = tmp_path / "tree.json"
    tree_file.write_text("[[0], [0, 0], [0, 0, 0]]")  # a chain given as a tree file
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt_ids": [1, 2, 3, 1, 2, 3, 1, 2]}\n{"prompt_ids": [7]}\n')
    code, out, _ = _run(
        capsys, "--target", ckpts["ids_model"], "--drafter", "ngram:2", "--tree", tree_file,
        "--prompts", jsonl, "--max-new-tokens", "6", "--json",
    )  # fmt: skip
    assert code == 0
    r = json.loads(out)
    assert [len(o["ids"]) for o in r["outputs"]] == [6, 6] and "text" not in r["outputs"][0]
    assert r["k"] == 0 and r["tree"] == [[0], [0, 0], [0, 0, 0]]


def test_plain_decoding_without_drafter(capsys, ckpts, text_prompts):
    code, out, _ = _run(
        capsys, "--target", ckpts["target"], "--prompts", text_prompts,
        "--max-new-tokens", "4", "--temperature", "0.7", "--json",
    )  # fmt: skip
    assert code == 0
    r = json.loads(out)
    assert r["stats"]["num_draft_tokens"] == 0 and r["stats"]["mean_accepted_len"] == 1.0


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing_dir", "checkpoint directory not found"),
        ("weight_mismatch", "shape"),
        ("vocab_mismatch", "drafter vocab_size 50 != target vocab_size 256"),
        ("empty_prompts", "holds no prompt"),
        ("k_negative", "--k: must be >= 0, got -1"),
        ("bad_tree", "tree.paths"),
        ("tree_not_list", "--tree"),
        ("text_on_id_model", "no byte tokenizer"),
        ("self_too_deep", "self:N needs 1 <= N < 3"),
        ("k_without_drafter", "needs --drafter"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, ckpts, text_prompts, tmp_path, case, match):
    target, prompts, extra = ckpts["target"], text_prompts, []
    if case == "missing_dir":
        target = tmp_path / "nope"
    elif case == "weight_mismatch":
        target = _save(tmp_path / "bad", 256, 3, 0, True)
        cfg = json.loads((target / "config.json").read_text())
        cfg["intermediate_size"] = 48
        (target / "config.json").write_text(json.dumps(cfg))
    elif case == "vocab_mismatch":
        extra = ["--drafter", ckpts["small_vocab"]]
    elif case == "empty_prompts":
        prompts = tmp_path / "empty.txt"
        prompts.write_text("\n\n")
    elif case == "k_negative":
        extra = ["--drafter", "ngram", "--k", "-1"]
    elif case == "bad_tree":
        extra = ["--drafter", "ngram", "--tree", "[[0],[2]]"]
    elif case == "tree_not_list":
        extra = ["--drafter", "ngram", "--tree", "[1, 2]"]
    elif case == "text_on_id_model":
        target = ckpts["ids_model"]
    elif case == "self_too_deep":
        extra = ["--drafter", "self:3"]
    elif case == "k_without_drafter":
        extra = ["--k", "2"]
    code, out, err = _run(capsys, "--target", target, "--prompts", prompts, *extra)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("spectune: error: ")
    assert match in err
    assert "Traceback" not in err and out == ""
