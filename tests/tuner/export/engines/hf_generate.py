"""Run emitted Hugging Face snippets with transformers' real ``generate`` (a subprocess).

usage: python hf_generate.py CASES.json -> one line ``RESULT {json}`` on stdout.
CASES.json: ``[{"id": str, "code": the emitted snippet}]``. Each snippet is executed as
pasted (it loads the tiny models its paths name), then ``target.generate(input_ids,
max_new_tokens=8, **generate_kwargs)`` runs on a batch-1 prompt. The candidate generator
``generate`` actually built is recorded with the draft length it uses
(``num_assistant_tokens``, or ``num_output_tokens`` for prompt lookup): keyword arguments
``generate`` ignores would show up here as its defaults.
"""

from __future__ import annotations

import json
import sys
import time
import warnings


def main() -> None:
    t0 = time.perf_counter()
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    warnings.filterwarnings("ignore")
    import torch
    import transformers
    from transformers.generation.utils import GenerationMixin

    transformers.logging.set_verbosity_error()
    seen: dict = {}
    original = GenerationMixin._get_candidate_generator

    def spy(self, *args, **kwargs):
        gen = original(self, *args, **kwargs)
        seen["generator"] = type(gen).__name__
        seen["k"] = getattr(gen, "num_assistant_tokens", getattr(gen, "num_output_tokens", None))
        seen["threshold"] = getattr(gen, "assistant_confidence_threshold", None)
        return gen

    GenerationMixin._get_candidate_generator = spy
    out = {"version": transformers.__version__, "results": {}}
    for case in cases:
        seen.clear()
        try:
            ns: dict = {}
            exec(compile(case["code"], f"<{case['id']}>", "exec"), ns)
            target = ns["target"]
            for m in (target, ns.get("assistant")):
                if m is not None:
                    m.generation_config.pad_token_id = 0
                    m.generation_config.eos_token_id = None
            ids = torch.randint(3, 500, (1, 12), generator=torch.Generator().manual_seed(0))
            y = target.generate(ids, max_new_tokens=8, do_sample=False, **ns["generate_kwargs"])
            res = {"ok": True, "new_tokens": int(y.shape[-1] - ids.shape[-1]), **seen}
        except Exception as e:
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        out["results"][case["id"]] = res
    out["total_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
