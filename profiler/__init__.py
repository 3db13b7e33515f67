"""spectune's profiler: measurement on a real device (torch).

Subpackages, in the order the loop uses them:

- :mod:`.runtime` — the model runtime: a Llama-family decoder, its KV cache, Hugging Face
  checkpoints, model specs (``DIR``, ``CONFIG.json``, ``ctrl:EPS``), prompt files, device,
  threads and timing.
- :mod:`.native` — spectune's own live speculative-decoding engine (draft, verify, accept;
  chains and trees; continuous batching) and its serving driver.
- :mod:`.engines` — adapters to real serving engines (one contract, one module per engine).
- :mod:`.measure` — the profilers: latency over batch × query tokens × context, and
  acceptance (per position, ranked, per request); they write the YAML profiles that are the
  only contract with :mod:`spectune.simulator`.
- :mod:`.demo` — the byte-level demo pair: corpus, training, evaluation.

May import: :mod:`spectune.simulator` (schemas, errors, the workload and metrics it shares
with live runs) and torch. Imported by: :mod:`spectune.validation` and the application
(:mod:`spectune.commands`); never by :mod:`spectune.simulator` or :mod:`spectune.tuner`.
"""
