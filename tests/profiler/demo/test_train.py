"""Demo-pair training: schedule, resumed training equals uninterrupted training, export
and cache, corpus split, prompt files, loop metric."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spectune.profiler.demo.corpus import (  # noqa: E402
    Corpus,
    distinct_ngram_fraction,
    list_files,
    load_corpus,
)
from spectune.profiler.demo.recipes import TARGET_RECIPE, TrainRecipe, _llama  # noqa: E402
from spectune.profiler.demo.train import lr_at, train_demo, train_model  # noqa: E402
from spectune.profiler.runtime.checkpoint import load_checkpoint  # noqa: E402
from spectune.profiler.runtime.prompts import read_prompts, tokenize_prompts  # noqa: E402
from spectune.simulator.errors import InputError  # noqa: E402

TEXT = b"def add(a, b):\n    return a + b\n\nclass Point:\n    x = 0\n    y = 1\n\n" * 60
CORPUS = Corpus(
    train=np.frombuffer(TEXT, dtype=np.uint8),
    heldout=np.frombuffer(TEXT[:2000], dtype=np.uint8),
    train_files=("a.py",),
    heldout_files=("b.py",),
    root="/",
)
TINY = TrainRecipe(
    name="tiny-target",
    model=_llama(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64),
    steps=12,
    batch=4,
    seq_len=32,
    lr=3e-3,
    warmup_steps=3,
    seed=3,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lr_schedule_warms_up_then_decays_to_floor():
    r = dataclasses.replace(TARGET_RECIPE, more_stages=())
    assert lr_at(0, r) == pytest.approx(r.lr / r.warmup_steps)
    assert lr_at(r.warmup_steps - 1, r) == pytest.approx(r.lr)
    assert lr_at(r.steps, r) == pytest.approx(r.lr * r.min_lr_ratio)
    lrs = [lr_at(s, r) for s in range(r.warmup_steps, r.steps)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_later_stage_starts_a_new_cycle_with_its_own_windows():
    r = dataclasses.replace(TINY, steps=10, more_stages=((20, 2, 64),), warmup_steps=2)
    assert r.total_steps == 30
    assert lr_at(9, r) < 0.2 * r.lr
    assert lr_at(10, r) == pytest.approx(lr_at(0, r))
    assert lr_at(11, r) == pytest.approx(r.lr)
    from spectune.profiler.demo.train import _batch

    assert tuple(_batch(CORPUS.train, r, 9).shape) == (4, 33)
    assert tuple(_batch(CORPUS.train, r, 10).shape) == (2, 65)


@pytest.mark.parametrize("stop", [5, 12, 14])  # mid cycle 1, at the boundary, mid cycle 2
def test_resumed_training_equals_uninterrupted(tmp_path, stop):
    recipe = dataclasses.replace(TINY, more_stages=((4, 2, 48),))
    full, _ = train_model(recipe, CORPUS, tmp_path / "a", log=lambda s: None, evaluate=False)
    work = tmp_path / "b"
    train_model(recipe, CORPUS, work, log=lambda s: None, evaluate=False, stop_after=stop)
    lines: list[str] = []
    resumed, _ = train_model(recipe, CORPUS, work, log=lines.append, evaluate=False)
    assert any(f"resumed at step {stop}/16" in s for s in lines)
    for (name, a), (_, b) in zip(
        full.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_training_lowers_loss_and_reports_loop_metric(tmp_path):
    recipe = dataclasses.replace(TINY, steps=40)
    from spectune.profiler.demo.train import heldout_loss

    untrained, _ = train_model(
        dataclasses.replace(recipe, steps=1), CORPUS, tmp_path / "u", log=lambda s: None,
        evaluate=False,
    )  # fmt: skip
    _, report = train_model(recipe, CORPUS, tmp_path / "t", log=lambda s: None)
    assert report.heldout_loss_nats < heldout_loss(untrained, CORPUS, n=8) - 0.5
    assert 0.0 < report.distinct_8gram_min <= report.distinct_8gram_fraction <= 1.0
    assert 0.0 < report.distinct_8gram_code_min <= report.distinct_8gram_code <= 1.0
    assert report.sample and report.sample_code  # decoded greedy continuations


@pytest.mark.slow
def test_train_demo_exports_bytes_checkpoints_and_caches(tmp_path, monkeypatch):
    import spectune.profiler.demo.train as train

    monkeypatch.setattr(train, "load_corpus", lambda: CORPUS)
    drafter = dataclasses.replace(
        TINY, name="tiny-drafter", seed=4, steps=4, distill_from="tiny-target"
    )
    target = dataclasses.replace(TINY, steps=4)
    lines: list[str] = []
    dirs = train_demo(tmp_path / "models", tmp_path / "work", log=lines.append,
                      recipes=(target, drafter))  # fmt: skip
    for name, d in dirs.items():
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["spectune_tokenizer"] == "bytes" and cfg["torch_dtype"] == "bfloat16"
        assert (
            cfg["spectune_train"]["recipe_digest"]
            == (target if "target" in name else drafter).digest()
        )
        assert load_checkpoint(d).dtype == torch.bfloat16
    lines.clear()
    train_demo(tmp_path / "models", tmp_path / "work", log=lines.append, recipes=(target, drafter))
    assert sum("cached" in s for s in lines) == 2  # nothing retrained


def test_distinct_ngram_fraction_flags_loops():
    assert distinct_ngram_fraction(list(b"the " * 64)) < 0.05
    assert distinct_ngram_fraction(list(range(100))) == 1.0


def test_stdlib_corpus_split_is_deterministic_and_disjoint():
    files = list_files(load_corpus.__globals__["stdlib_root"]())
    assert files == sorted(files) and not any("site-packages" in f for f in files)
    c = load_corpus()
    assert set(c.train_files).isdisjoint(c.heldout_files)
    assert 0.01 < len(c.heldout) / (len(c.train) + len(c.heldout)) < 0.1


def test_read_prompts_formats(tmp_path):
    blocks = tmp_path / "b.txt"
    blocks.write_text("def f():\n    pass\n---\nx = 1\n")
    assert read_prompts(blocks) == ["def f():\n    pass\n", "x = 1\n"]
    lines = tmp_path / "l.txt"
    lines.write_text("one\n\ntwo\n")
    assert read_prompts(lines) == ["one", "two"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('"a"\n{"prompt": "b"}\n{"prompt_ids": [1, 2]}\n')
    assert read_prompts(jl) == ["a", "b", [1, 2]]
    assert tokenize_prompts(["ab"], "bytes", 256, "x") == [[97, 98]]
    with pytest.raises(InputError, match="no byte tokenizer"):
        tokenize_prompts(["ab"], None, 256, "x")
    with pytest.raises(InputError, match="vocab_size"):
        tokenize_prompts([[300]], None, 256, "x")
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="holds no prompt"):
        read_prompts(empty)
