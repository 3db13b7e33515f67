"""Every shape the exporter can emit, per engine version, and the engines' own parsers run
once per test session on all of them.

A *case* is one configuration (method x shape) emitted for one engine version with the
tiny checkpoints of ``.cache/parsers/models`` as its models. vLLM and SGLang pastes are
run by ``bash`` with stand-in ``vllm`` / ``python`` functions that print the words they
receive — so the argv the parsers get is what a shell passes from the pasted text — and
the words go to ``tests/tuner/export/engines/*_parse.py`` in one subprocess per parser;
Hugging Face snippets are executed by ``hf_generate.py``; TensorRT-LLM YAML is checked
against ``tests/tuner/export/trtllm_schema.py``. Set up by
``tests/tuner/export/engines/setup.py`` (``./spectune.sh test`` runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectune.tuner.export import VERSIONS, Capabilities, EngineConfig, SpecChoice, emit

REPO = Path(__file__).resolve().parent.parent
ENGINES_DIR = REPO / "tests" / "tuner" / "export" / "engines"
CACHE = Path(os.environ.get("SPECTUNE_PARSER_CACHE", REPO / ".cache" / "parsers"))
MODELS = CACHE / "models"

METHODS = ("draft_model", "self", "eagle", "eagle3", "mtp", "medusa", "ngram", "suffix")
KIND = {"draft_model": "draft_model", "self": "self", "ngram": "ngram", "suffix": "ngram"}
TREE = ((0,), (1,), (0, 0), (1, 0))  # 2 levels of 2: every node of a level has one child
SCHEDULE = [(1, 1, 4), (2, 4, 3), (5, 8, 2), (9, 16, 0)]
RISING = [(1, 1, 2), (2, 4, 4), (5, 16, 1)]  # batch-1 k below a later band's
CUTOFF = [(1, 4, 3), (5, 16, 0)]  # speculation policy "cutoff": k = 3 up to batch 4
# Speculation policies as simulated (SpecChoice.policy): the bands travel in the choice.
# (A "schedule" policy emits exactly what the "schedule" shape's bands do — tested without
# a parser in tests/tuner/test_export.py — so it is not parsed twice.)
POLICY_SHAPES = {"cutoff": "cutoff", "adaptive": "sglang_adaptive", "goodput": "goodput"}
POLICY_METHODS = ("draft_model", "eagle", "ngram")
CAP, TOKENS = 16, 4096

# Where each parser runs: the parser folders first on PYTHONPATH (None = the environment's
# own vLLM 0.32.0 / transformers 5.19.0).
RUNNERS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("vllm", "0.32.0"): ("vllm_parse.py", ("arctic-inference",)),
    ("vllm", "0.20.2"): ("vllm_parse.py", ("vllm-0.20.2",)),
    ("sglang", "0.5.23"): ("sglang_parse.py", ("sglang-0.5.23",)),
    ("hf", "5.19.0"): ("hf_generate.py", ()),
    ("hf", "4.57.6"): ("hf_generate.py", ("vllm-0.20.2",)),
}


@dataclass
class Case:
    """One emitted shape for one engine version."""

    id: str
    caps: Capabilities
    choice: SpecChoice
    bands: list | None
    config: EngineConfig | None = None  # None: the version cannot run the choice
    reason: str | None = None
    argv: list[str] = field(default_factory=list)  # what the shell passed (commands)
    cwd: str = ""


def choice(method: str, shape: str) -> tuple[SpecChoice, list | None]:
    """The configuration of ``method`` in ``shape`` (plain | chain | schedule | rising |
    tree, or a speculation policy of :data:`POLICY_SHAPES`), with the tiny checkpoints as
    models. Returns the choice and the bands that should reach the engine."""
    base = {
        "max_num_seqs": CAP,
        "max_num_batched_tokens": TOKENS,
        "target_model": str(MODELS / "tiny-llama-target"),
    }
    if shape == "plain":
        return SpecChoice(**base), None
    if method == "mtp":
        base["target_model"] = str(MODELS / "tiny-deepseek-v3-mtp")
    kind = KIND.get(method, "heads")
    c = SpecChoice(
        drafter=f"d-{method}",
        kind=kind,
        variant=None if kind in ("draft_model", "self") else method,
        num_spec_tokens=2 if shape == "tree" else 3,
        tree_paths=TREE if shape == "tree" else None,
        draft_model=str(MODELS / "tiny-llama-draft") if method != "mtp" else None,
        self_layers=1 if method == "self" else None,
        policy=POLICY_SHAPES.get(shape, "fixed"),
        bands=tuple(CUTOFF) if shape == "cutoff" else None,
        **base,
    )
    bands = {"schedule": SCHEDULE, "rising": RISING}.get(shape)
    return c, bands if shape != "cutoff" else CUTOFF


def cases() -> list[Case]:
    """Every (engine version, method, shape) case, emitted (or refused with the reason)."""
    out = []
    for engine, versions in VERSIONS.items():
        for caps in versions:
            shapes = [("plain", "plain")] + [
                (m, s) for m in METHODS for s in ("chain", "schedule", "rising", "tree")
            ]
            # The policies' syntax does not depend on the method (the schedule shape covers
            # each method's bands): one model drafter, one head, one lookup.
            shapes += [(m, s) for m in POLICY_METHODS for s in POLICY_SHAPES]
            for method, shape in shapes:
                c, bands = choice(method, shape)
                case = Case(f"{engine}-{caps.version}-{method}-{shape}", caps, c, bands)
                if (why := caps.why_not(c)) is not None:
                    case.reason = why
                else:
                    case.config, _ = emit(caps, c, bands)
                out.append(case)
    return out


def shell_argv(text: str, workdir: str) -> list[str]:
    """Run a pasted command in ``bash`` with ``vllm`` / ``python`` replaced by functions
    that print their words: the argv a shell passes from ``text``."""
    script = (
        "vllm() { printf '%s\\0' vllm \"$@\"; }\n"
        "python() { printf '%s\\0' python \"$@\"; }\n" + text
    )
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=workdir, capture_output=True, check=True
    )
    return done.stdout.decode().split("\0")[:-1]


RUNNING: list[ParserRun] = []  # every parser subprocess started in this session


def wait_for_parsers(timeout: float = 1800) -> None:
    """Wait until no parser subprocess runs (timing-sensitive live tests call this: the
    parsers load whole engines beside the suite)."""
    for run in RUNNING:
        run._proc.wait(timeout=timeout)


class ParserRun:
    """One parser subprocess on a payload, started at once (:meth:`result` waits)."""

    def __init__(self, script: str, folders: tuple[str, ...], payload: list[dict]) -> None:
        setup = import_module_from(ENGINES_DIR / "setup.py")
        env = {
            **os.environ,
            "PYTHONPATH": setup.pythonpath(*folders),
            "VLLM_LOGGING_LEVEL": "ERROR",
            # vLLM caches what it learns of model classes: keep it in the parsers' cache,
            # per version, not in the user's home.
            "VLLM_CACHE_ROOT": str(CACHE / f"vllm-cache-{'-'.join(folders) or 'env'}"),
        }
        self.script = script
        # The handles outlive __init__: the subprocess writes to them until result().
        self._input = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        with self._input as fh:
            json.dump(payload, fh)
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, str(ENGINES_DIR / script), self._input.name],
            env=env,
            stdout=self._out,
            stderr=self._err,
            text=True,
        )
        RUNNING.append(self)

    def result(self, timeout: float = 1800) -> dict[str, Any]:
        """The parser's result document (waits for it to finish)."""
        try:
            self._proc.wait(timeout=timeout)
        finally:
            os.unlink(self._input.name)
        self._out.seek(0)
        for line in self._out.read().splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        self._err.seek(0)
        raise RuntimeError(f"{self.script} failed: {self._err.read()[-3000:]}")


def run_parser(script: str, folders: tuple[str, ...], payload: list[dict]) -> dict[str, Any]:
    """Run one parser subprocess on ``payload`` and return its result document."""
    return ParserRun(script, folders, payload).result()


def import_module_from(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem + "_mod", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result_of(runs: dict[str, Any], case: Case) -> dict[str, Any]:
    """A case's parser result from the session's runs."""
    return runs["results"][(case.caps.engine, case.caps.version)]["results"][case.id]


def suffix_impossible() -> str | None:
    """Why vLLM 0.32.0's ``suffix`` cases cannot run here (arctic-inference would not
    install), or None."""
    stamp = CACHE / "arctic-inference" / ".spectune-impossible"
    return stamp.read_text() if stamp.exists() else None


def parsers_missing() -> str | None:
    """Why the parsers cannot run (None = they can)."""
    need = [CACHE / n / ".spectune-stamp" for n in ("vllm-0.20.2", "sglang-0.5.23")]
    need.append(MODELS / ".spectune-stamp")
    missing = [str(p.parent) for p in need if not p.exists()]
    if missing:
        return (
            "engine parsers are not set up (" + ", ".join(missing) + "): run ./spectune.sh "
            "test, or python tests/tuner/export/engines/setup.py"
        )
    return None


# Shapes spectune emitted before it checked versions, each fed to the parser that must
# refuse it (and so proves the check can fail): engine, version, id, payload entry, what
# the refusal says.
TREE_0_20 = {
    "method": "eagle",
    "num_speculative_tokens": 4,
    "speculative_token_tree": "[(0,), (1,), (0, 0), (1, 0)]",
}
SCHED_0_32 = {
    "method": "ngram",
    "num_speculative_tokens": 3,
    "num_speculative_tokens_per_batch_size": [[1, 4, 3], [5, 16, 1]],
}
SCHED_AT_2 = {**SCHED_0_32, "num_speculative_tokens_per_batch_size": [[2, 16, 3]]}


def controls() -> list[tuple[str, str, str, dict, str]]:
    target, draft = str(MODELS / "tiny-llama-target"), str(MODELS / "tiny-llama-draft")
    serve = ["vllm", "serve", target, "--speculative-config"]
    launch = ["python", "-m", "sglang.launch_server", "--model-path", target]
    eagle = [*launch, "--speculative-algorithm", "EAGLE", "--speculative-draft-model-path", draft]
    old_hf = (
        "from transformers import AutoModelForCausalLM\n"
        f"target = AutoModelForCausalLM.from_pretrained({target!r})\n"
        f"assistant = AutoModelForCausalLM.from_pretrained({draft!r})\n"
        "generate_kwargs = {'assistant_model': assistant, 'num_assistant_tokens': 3, "
        "'num_assistant_tokens_schedule': 'constant', 'assistant_confidence_threshold': 0.0}\n"
    )
    return [
        (
            "vllm",
            "0.32.0",
            "tree-in-0.32",
            {"argv": [*serve, json.dumps({**TREE_0_20, "model": draft})]},
            "speculative_token_tree",
        ),
        (
            "vllm",
            "0.20.2",
            "schedule-in-0.20",
            {"argv": [*serve, json.dumps(SCHED_0_32)]},
            "num_speculative_tokens_per_batch_size",
        ),
        ("vllm", "0.32.0", "schedule-from-2", {"argv": [*serve, json.dumps(SCHED_AT_2)]}, "start"),
        (
            "sglang",
            "0.5.23",
            "steps-without-topk",
            {"argv": [*eagle, "--speculative-num-steps", "3"]},
            "TypeError",
        ),
        (
            "sglang",
            "0.5.23",
            "adaptive-steps-not-candidate",
            {
                "argv": [
                    *eagle,
                    "--speculative-adaptive",
                    "--speculative-num-steps",
                    "4",
                    "--speculative-eagle-topk",
                    "1",
                    "--speculative-num-draft-tokens",
                    "5",
                ]
            },
            "candidate_steps",
        ),
        ("hf", "5.19.0", "kwargs-ignored", {"code": old_hf}, "k="),
    ]
