"""The byte-level demo corpus: the Python standard library sources this machine ships.

Files are the ``*.py`` files under ``sysconfig.get_paths()['stdlib']`` (third-party
``site-packages`` and the big ``test`` suites left out), read as raw bytes in sorted
relative-path order and joined with a blank line, so the corpus is the same on every run on
the same Python. A file belongs to the held-out split when a stable hash of its relative
path falls in the held-out slice: adding or removing a file never moves other files between
splits. Tokens are bytes (vocabulary 256, no special tokens).
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectune.profiler.runtime.prompts import PROMPT_SEPARATOR
from spectune.simulator.errors import InputError

BYTE_VOCAB = 256
# Directories that are not representative library code (test suites, generated codec tables,
# the pydoc topics blob, vendored third-party packages): they would teach repetition.
_SKIP_DIRS = {
    "site-packages",
    "test",
    "tests",
    "idle_test",
    "__pycache__",
    "lib2to3",
    "encodings",
    "pydoc_data",
}
_SEPARATOR = b"\n\n"


@dataclass(frozen=True)
class Corpus:
    """Train / held-out byte arrays and the files they came from."""

    train: np.ndarray  # [train_bytes] uint8
    heldout: np.ndarray  # [heldout_bytes] uint8
    train_files: tuple[str, ...]
    heldout_files: tuple[str, ...]
    root: str


def stdlib_root() -> Path:
    """The folder holding this interpreter's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def _is_heldout(rel: str, heldout_per_mille: int) -> bool:
    digest = hashlib.sha256(rel.encode()).digest()
    return int.from_bytes(digest[:4], "little") % 1000 < heldout_per_mille


def list_files(root: Path) -> list[str]:
    """Relative paths of the corpus files under ``root``, sorted (deterministic order)."""
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def load_corpus(root: str | Path | None = None, heldout_per_mille: int = 30) -> Corpus:
    """Read the corpus and split it by file.

    Args:
        root: source folder (default: this interpreter's stdlib).
        heldout_per_mille: share of files held out for evaluation, in 1/1000.

    Returns:
        The corpus as two uint8 arrays.

    Raises:
        InputError: the folder holds no Python files or no file lands in one split.
    """
    base = Path(root) if root is not None else stdlib_root()
    files = list_files(base)
    if not files:
        raise InputError("no *.py files found", source=base)
    train_parts: list[bytes] = []
    held_parts: list[bytes] = []
    train_files: list[str] = []
    held_files: list[str] = []
    for rel in files:
        data = (base / rel).read_bytes()
        if _is_heldout(rel, heldout_per_mille):
            held_parts.append(data)
            held_files.append(rel)
        else:
            train_parts.append(data)
            train_files.append(rel)
    if not train_parts or not held_parts:
        raise InputError(
            f"split is empty ({len(train_parts)} train, {len(held_parts)} held-out files)",
            source=base,
        )
    return Corpus(
        train=np.frombuffer(_SEPARATOR.join(train_parts), dtype=np.uint8),
        heldout=np.frombuffer(_SEPARATOR.join(held_parts), dtype=np.uint8),
        train_files=tuple(train_files),
        heldout_files=tuple(held_files),
        root=str(base),
    )


def random_windows(
    data: np.ndarray, batch: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """``batch`` windows of ``length`` consecutive bytes at uniform random offsets.

    Returns:
        int64 array [batch, length].
    """
    starts = rng.integers(0, len(data) - length, size=batch)
    idx = starts[:, None] + np.arange(length)[None, :]
    return data[idx].astype(np.int64)


def distinct_ngram_fraction(tokens: list[int], n: int = 8) -> float:
    """Fraction of distinct n-grams among all n-grams of ``tokens`` (1.0 = no repeats).

    A model that collapses into a loop ("the the the") scores near 0; varied text near 1.
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def heldout_snippets(corpus: Corpus, n: int = 32, max_bytes: int = 320, seed: int = 0) -> list[str]:
    """``n`` held-out code snippets that start at a ``def`` or ``class`` line and end at a
    line end within ``max_bytes`` (prompts the demo models never trained on).

    Snippets come from distinct, evenly spaced ``def``/``class`` lines chosen by a seeded
    generator; the result is the same for the same stdlib.
    """
    text = corpus.heldout.tobytes().decode("utf-8", errors="replace")
    starts = [
        i
        for i in range(len(text))
        if (i == 0 or text[i - 1] == "\n") and text.startswith(("def ", "class ", "    def "), i)
    ]
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    picks = sorted(rng.choice(len(starts), size=min(n, len(starts)), replace=False))
    out = []
    for idx in picks:
        chunk = text[starts[idx] : starts[idx] + max_bytes]
        cut = chunk.rfind("\n")
        chunk = chunk[: cut + 1] if cut > 0 else chunk
        if PROMPT_SEPARATOR not in chunk.splitlines():
            out.append(chunk)
    return out
