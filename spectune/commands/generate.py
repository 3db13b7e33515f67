"""``spectune generate``: run real (speculative) decoding on local models and report it.

Loads a target checkpoint and a drafter, generates for every prompt of a file with the
live engine (:class:`spectune.profiler.native.engine.SpecEngine`, continuous batching up to
``--batch`` sequences), and reports tokens/s, the step counters (mean accepted length incl.
the bonus token, acceptance per position), draft / verify / overhead ms per step, and the
outputs. ``--baseline`` also runs plain decoding on the same prompts and reports the
speedup and, under greedy decoding, whether the outputs are identical (they must be).

Models (``--target``, ``--drafter``): a Hugging Face-format checkpoint directory
(config.json + *.safetensors), a ``CONFIG.json`` (random weights), or ``ctrl:EPS`` (the
controllable demo pair's target; its drafter is ``self:2``). Drafters: a model as above
(``draft_model``), ``self:N`` (the target's first N layers), ``ngram`` or ``ngram:N``
(prompt lookup with n-grams of 1..N tokens, default 3).

Prompt files: text, one prompt per line (or blocks separated by ``---`` lines), encoded as
UTF-8 bytes — only for byte-level models, whose config.json carries
``"spectune_tokenizer": "bytes"``; or ``.jsonl`` with ``{"prompt_ids": [...]}`` (any model)
or ``{"prompt": "..."}`` / a JSON string per line (byte-level models).

torch is imported inside the handler only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from spectune.output import fmt, print_json, table, user_doc
from spectune.simulator.errors import InputError

EPILOG = """\
examples:
  spectune generate --target ctrl:0.01 --drafter self:2 --k 4 --prompts examples/prompts/stdlib.txt
  spectune generate --target DIR --drafter ngram --tree '[[0],[1],[0,0]]' --prompts p.jsonl --json
  spectune generate --target DIR --drafter DRAFT_DIR --k 3 --batch 8 --temperature 0.8 \\
      --prompts p.txt --baseline
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="run live speculative decoding on local models (needs torch)",
        description=user_doc(__doc__),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", required=True, help="checkpoint DIR, CONFIG.json or ctrl:EPS")
    p.add_argument(
        "--drafter",
        default=None,
        help="draft model (DIR, CONFIG.json, ctrl:EPS), self:N or ngram[:N]; omit for plain "
        "decoding",
    )
    spec = p.add_mutually_exclusive_group()
    spec.add_argument(
        "--k", type=int, default=None, help="chain draft length (default 4 with a drafter)"
    )
    spec.add_argument(
        "--tree",
        default=None,
        metavar="PATHS",
        help="static tree: JSON list of paths (e.g. '[[0],[1],[0,0]]') or a file holding one",
    )
    p.add_argument("--prompts", required=True, metavar="FILE", help="prompt file (see above)")
    p.add_argument("--batch", type=int, default=8, help="sequences decoded at once (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="per prompt (default 64)")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument(
        "--eos", default="config", help="stop token id, 'none', or 'config' (the target's)"
    )
    p.add_argument(
        "--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default: checkpoint's"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--baseline", action="store_true", help="also run plain decoding; report the speedup"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def parse_tree_arg(value: str) -> list[list[int]]:
    """``--tree`` as a list of paths: inline JSON, or a JSON/YAML file holding the list.

    Raises:
        InputError: unreadable file, not a list of integer lists.
    """
    text = value.strip()
    source = "--tree"
    if not text.startswith("["):
        path = Path(value)
        if not path.is_file():
            raise InputError(
                "expected a JSON list of paths like [[0],[1],[0,0]] or a file holding one; "
                "no such file",
                source=value,
                field="--tree",
            )
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read: {e}", source=path, field="--tree") from None
    try:
        paths = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            paths = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"not JSON or YAML: {e}", source=source, field="--tree") from None
    if isinstance(paths, dict) and "paths" in paths:
        paths = paths["paths"]
    ok = isinstance(paths, list) and all(
        isinstance(p, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in p)
        for p in paths
    )
    if not ok:
        raise InputError(
            f"must be a list of lists of integer ranks, got {str(paths)[:60]}",
            source=source,
            field="--tree",
        )
    return paths


def _parse_drafter_spec(spec: str | None) -> tuple[str, Any]:
    """-> (kind, arg): ('none', None), ('ngram', max_n), ('self', N), ('draft_model', spec)."""
    if spec is None:
        return "none", None
    if spec == "ngram" or spec.startswith("ngram:"):
        raw = spec.partition(":")[2] or "3"
        if not raw.isdigit() or int(raw) < 1:
            raise InputError(
                f"expected ngram or ngram:N with N >= 1, got {spec!r}", field="--drafter"
            )
        return "ngram", int(raw)
    if spec.startswith("self:"):
        raw = spec.partition(":")[2]
        if not raw.isdigit():
            raise InputError(f"expected self:N with an integer N, got {spec!r}", field="--drafter")
        return "self", int(raw)
    return "draft_model", spec


def run(args: argparse.Namespace) -> int:
    # Cheap argument checks first: bad input fails before any model is loaded.
    if args.k is not None and args.k < 0:
        raise InputError(f"must be >= 0, got {args.k}", field="--k")
    if args.batch < 1:
        raise InputError(f"must be >= 1, got {args.batch}", field="--batch")
    if args.max_new_tokens < 1:
        raise InputError(f"must be >= 1, got {args.max_new_tokens}", field="--max-new-tokens")
    if not args.temperature >= 0:
        raise InputError(f"must be >= 0, got {args.temperature}", field="--temperature")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"must be >= 1, got {args.threads}", field="--threads")
    kind, darg = _parse_drafter_spec(args.drafter)
    tree_paths = parse_tree_arg(args.tree) if args.tree is not None else None
    if kind == "none" and ((args.k or 0) > 0 or tree_paths):
        raise InputError("speculative decoding needs --drafter (DIR, self:N or ngram)", field="--k")
    if args.eos not in ("config", "none") and not args.eos.isdigit():
        raise InputError(
            f"expected a token id, 'none' or 'config', got {args.eos!r}", field="--eos"
        )

    from spectune.simulator.tree import Tree

    try:
        tree = Tree.from_paths(tree_paths) if tree_paths else None
    except InputError as e:
        raise InputError(e.message, source="--tree", field=e.field) from None
    from spectune.profiler.runtime.prompts import read_prompts

    raw_prompts = read_prompts(args.prompts)  # InputError: missing / empty / malformed

    from spectune.profiler.native.drafters import ModelDrafter, NgramDrafter
    from spectune.profiler.native.engine import SpecEngine
    from spectune.profiler.native.generate import generate
    from spectune.profiler.runtime.device import resolve_device, set_threads
    from spectune.profiler.runtime.prompts import decode, tokenize_prompts
    from spectune.profiler.runtime.specs import load_model

    set_threads(args.threads)
    device = resolve_device(args.device)
    target = load_model(args.target, args.dtype, device)
    tcfg = target.model.config
    prompts = tokenize_prompts(raw_prompts, target.tokenizer, tcfg.vocab_size, args.prompts)

    drafter_name = args.drafter or "none"
    if kind == "ngram":
        make_drafter = lambda: NgramDrafter(1, darg)
    elif kind == "self":
        if not 1 <= darg < tcfg.num_hidden_layers:
            raise InputError(
                f"self:N needs 1 <= N < {tcfg.num_hidden_layers} (the target's layers), got {darg}",
                field="--drafter",
            )
        make_drafter = lambda: ModelDrafter(target.model, darg, share_target_cache=True)
    elif kind == "draft_model":
        dm = load_model(darg, args.dtype, device)
        if dm.model.config.vocab_size != tcfg.vocab_size:
            raise InputError(
                f"drafter vocab_size {dm.model.config.vocab_size} != target vocab_size "
                f"{tcfg.vocab_size} ({args.target})",
                source=darg,
                field="vocab_size",
            )
        make_drafter = lambda: ModelDrafter(dm.model)
    else:
        make_drafter = lambda: None
    k = 0 if tree is not None or kind == "none" else (4 if args.k is None else args.k)
    if args.eos == "config":
        eos = tcfg.eos_token_id
    else:
        eos = None if args.eos == "none" else int(args.eos)

    width = 1 + (tree.num_nodes if tree is not None else k)
    max_len = max(len(p) for p in prompts) + args.max_new_tokens + width + 2

    def run_engine(spec_k: int, spec_tree: Any, drafter: Any) -> Any:
        engine = SpecEngine(
            target.model,
            drafter,
            k=spec_k,
            tree=spec_tree,
            temperature=args.temperature,
            seed=args.seed,
            max_batch=args.batch,
            max_len=max_len,
            eos_token_id=eos,
        )
        generate(engine, prompts[:1], 2)  # warm-up: first forwards pay one-off costs
        return generate(engine, prompts, args.max_new_tokens)

    result = run_engine(k, tree, make_drafter())
    base = run_engine(0, None, None) if args.baseline else None
    byte_level = target.tokenizer == "bytes"
    report = _report(args, drafter_name, kind, k, tree, result, base, byte_level, decode)
    if args.json:
        print_json(report)
    else:
        _print_text(report)
    return 0


def _report(args, drafter_name, kind, k, tree, result, base, byte_level, decode) -> dict:
    st = result.stats
    out: dict[str, Any] = {
        "target": args.target,
        "drafter": drafter_name,
        "drafter_kind": kind,
        "k": k,
        "tree": tree.paths() if tree is not None else None,
        "temperature": args.temperature,
        "seed": args.seed,
        "batch": args.batch,
        "num_prompts": len(result.outputs),
        "generated_tokens": result.generated_tokens,
        "wall_s": result.wall_s,
        "tok_per_s": result.tok_per_s,
        "stats": st.to_dict(),
        "outputs": [
            {"ids": o, **({"text": decode(o)} if byte_level else {})} for o in result.outputs
        ],
        "baseline": None,
    }
    if base is not None:
        out["baseline"] = {
            "tok_per_s": base.tok_per_s,
            "wall_s": base.wall_s,
            "speedup": result.tok_per_s / base.tok_per_s,
            "outputs_identical": base.outputs == result.outputs,
        }
    return out


def _print_text(r: dict) -> None:
    st = r["stats"]
    spec = f"tree {r['tree']}" if r["tree"] is not None else (f"chain k={r['k']}" if r["k"] else "")
    print(f"target {r['target']}, drafter {r['drafter']} {spec}".rstrip())
    print(
        f"{r['num_prompts']} prompts, batch {r['batch']}, temperature {r['temperature']}: "
        f"{r['generated_tokens']} tokens in {r['wall_s']:.2f} s = {r['tok_per_s']:.1f} tok/s"
    )
    if r["baseline"] is not None:
        b = r["baseline"]
        same = "identical" if b["outputs_identical"] else "different"
        note = "" if r["temperature"] > 0 else f"; outputs {same}"
        print(f"plain decoding: {b['tok_per_s']:.1f} tok/s -> speedup {b['speedup']:.2f}x{note}")
    print(
        f"decode steps {st['num_decode_steps']}, mean accepted length "
        f"{fmt(st['mean_accepted_len'])}, acceptance rate {fmt(st['acceptance_rate'])}, "
        f"tokens per sequence-step {fmt(st['tokens_per_seq_step'])}"
    )
    print(
        f"per step: draft {fmt(st['draft_ms_per_step'])} ms, verify "
        f"{fmt(st['verify_ms_per_step'])} ms, overhead {fmt(st['overhead_ms_per_step'])} ms"
    )
    if st["drafted_per_position"]:
        # Three rates, three conventions (docs/acceptance.md): accepted / drafted at the
        # position, vLLM's unconditional u_i = accepted / drafts, and the conditional a_i =
        # accepted / (drafts that reached position i with a token there).
        rows = [
            [i + 1, d, a, a / d, u, c]
            for i, (d, a, u, c) in enumerate(
                zip(
                    st["drafted_per_position"],
                    st["accepted_per_position"],
                    st["acceptance_per_position"],
                    st["conditional_acceptance"],
                    strict=True,
                )
            )
            if d
        ]
        if rows:
            head = ["position", "drafted", "accepted", "accepted/drafted"]
            print(table(rows, [*head, "u_i (vLLM)", "a_i (conditional)"]))
    print("outputs:")
    for i, o in enumerate(r["outputs"]):
        shown = json.dumps(o["text"], ensure_ascii=False) if "text" in o else str(o["ids"])
        print(f"[{i}] {shown[:200]}")
