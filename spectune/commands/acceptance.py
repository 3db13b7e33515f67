"""``spectune acceptance import``: engines' and benchmarks' acceptance numbers in, an
acceptance profile out.

Reads (a) a vLLM ``/metrics`` text dump, or the URL to scrape it from, (b) a ``vllm bench
serve`` result JSON, (c) vLLM per-request detailed spec-decode metrics as JSONL, or (d) a
generic JSONL of per-request accepted-length sequences; converts every rate to spectune's
conventions (docs/acceptance.md) and writes an acceptance profile (``spectune/acceptance/v1``)
that scenarios name in ``drafters[].acceptance.profile``. Per-request formats become
per-request trajectories the simulator replays.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spectune.output import fmt, print_json, table, user_doc
from spectune.simulator.acceptance_readers import FORMATS, detect_format, read, read_file_text
from spectune.simulator.analytic import conventions as cv
from spectune.simulator.errors import InputError
from spectune.simulator.schema_base import MAX_SPEC_TOKENS

EPILOG = """\
examples:
  spectune acceptance import metrics.txt --drafter eagle --drafter-kind heads --out acc.yaml
  spectune acceptance import http://localhost:8000/metrics --drafter ngram \\
      --drafter-kind ngram --out acceptance/ngram.yaml
  spectune acceptance import bench-result.json --out acc.yaml       # vllm bench serve --save-result
  spectune acceptance import requests.jsonl --format vllm-requests --out acc.yaml
  spectune acceptance import lengths.jsonl --k 4 --bonus-included --out acc.yaml

formats (auto-detected unless --format):
  prometheus     vllm:spec_decode_num_drafts / _num_draft_tokens / _num_accepted_tokens /
                 _num_accepted_tokens_per_pos{position=...} counters (unconditional rates)
  vllm-bench     spec_decode_acceptance_length, spec_decode_acceptance_rate (percent),
                 spec_decode_per_position_acceptance_rates (unconditional)
  vllm-requests  one response per line with metrics.speculative_decoding (per_step_accepted,
                 per_step_drafted, num_spec_tokens) and usage.completion_tokens
                 (--per-request-spec-decode-metrics detailed, vLLM >= 0.29)
  jsonl          {"accepted": [...]} (drafts accepted per step) or {"accept_lengths": [...]}
                 (tokens per step, bonus included), optional k, drafted, output_tokens; or a
                 bare list per line (--bonus-included says which)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "acceptance",
        help="import engines' acceptance metrics into an acceptance profile",
        description=user_doc(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="acceptance_command", metavar="SUBCOMMAND")
    imp = sub.add_parser(
        "import",
        help="read vLLM metrics / benchmark results / per-request traces; write a profile",
        description=user_doc(__doc__),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("source", metavar="FILE|URL", help="a file, or http(s)://.../metrics")
    imp.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    imp.add_argument("--out", required=True, metavar="FILE", help="acceptance profile to write")
    imp.add_argument(
        "--k",
        type=int,
        help="the run's draft length (num_speculative_tokens): checked against the file, "
        "or the k of files that do not say",
    )
    imp.add_argument(
        "--bonus-included",
        action="store_true",
        help="jsonl bare lists are tokens per step (bonus included), not drafts accepted",
    )
    imp.add_argument("--target", help="target model name (default: the file's, else 'target')")
    imp.add_argument("--drafter", default="imported", help="drafter name (default: imported)")
    imp.add_argument(
        "--drafter-kind",
        default="draft_model",
        choices=("draft_model", "heads", "ngram", "self", "suffix"),
        help="drafter kind (default draft_model); it must match the scenario's drafter",
    )
    imp.add_argument("--dataset", default="imported", help="dataset name (default: imported)")
    imp.add_argument("--temperature", default="0", help="sampling temperature of the run")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    imp.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    import sys

    p.print_help(sys.stderr)
    return 2


def _fetch(url: str) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise InputError(f"cannot fetch ({reason})", source=url) from None


def run_import(args: argparse.Namespace) -> int:
    from spectune.simulator.acceptance_records import to_profile
    from spectune.simulator.schema import dump_yaml

    k = args.k
    if k is not None and not 1 <= k <= MAX_SPEC_TOKENS:
        raise InputError(f"must be in 1..{MAX_SPEC_TOKENS}, got {k}", field="--k")
    try:
        temperature = float(args.temperature)
    except ValueError:
        raise InputError(f"{args.temperature!r} is not a number", field="--temperature") from None
    if not 0 <= temperature < float("inf"):
        raise InputError(f"must be finite and >= 0, got {args.temperature}", field="--temperature")
    out = Path(args.out)
    if out.is_dir():
        raise InputError("is a folder, not a file", source=out, field="--out")
    source = args.source
    url = source.startswith(("http://", "https://"))
    text = _fetch(source) if url else read_file_text(source)
    fmt_name = args.format if args.format != "auto" else detect_format(text, source)
    got = read(text, fmt_name, source, k, args.bonus_included)

    profile = to_profile(
        got,
        target=args.target or got.target or "target",
        drafter=args.drafter,
        drafter_kind=args.drafter_kind,
        dataset=args.dataset,
        temperature=temperature,
        how=f"spectune acceptance import: {fmt_name} from {source}",
    )
    dump_yaml(profile, out)

    kk = got.k
    al = cv.acceptance_length(got.per_position, kk)
    summary = {
        "format": fmt_name,
        "source": source,
        "out": str(out),
        "k": kk,
        "acceptance_length": al,
        "vllm_acceptance_rate": cv.vllm_acceptance_rate(al, kk),
        "per_position": got.per_position,
        "unconditional": cv.unconditional_from_conditional(got.per_position),
        "match_probability": got.match_probability,
        "trajectories": len(got.trajectories),
        "num_drafts": got.num_drafts,
        "notes": got.notes,
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"read {fmt_name} from {source}: k = {kk}, {got.num_drafts:,} drafting steps, "
        f"{len(got.trajectories):,} per-request trajectories"
    )
    print(
        f"mean acceptance length {al:.4f} (bonus included; 1 + sum of u_i); vLLM acceptance "
        f"rate {summary['vllm_acceptance_rate']:.4f} (= (AL - 1) / k, not a per-position rate)"
    )
    rows = [
        (i + 1, fmt(a, 4), fmt(u, 4))
        for i, (a, u) in enumerate(zip(got.per_position, summary["unconditional"], strict=True))
    ]
    print(table(rows, ["position", "a_i (conditional)", "u_i (unconditional, vLLM)"]))
    for note in got.notes:
        print(f"note: {note}")
    print(f"wrote {out} (drafter {args.drafter}, kind {args.drafter_kind})")
    return 0
