"""spectune's own live speculative-decoding engine.

``engine`` (:class:`~.engine.SpecEngine`: batched draft + verify steps, continuous
batching), ``drafters`` (draft model, self / layer-skip, n-gram), ``ngram`` (prompt-lookup
proposer), ``sampling`` (greedy and speculative-sampling verification for chains and
trees), ``spec_stats`` (vLLM-style counters) and ``serve`` (the engine driven in real time
by the simulator's own workloads and scheduling rules).

Builds on :mod:`spectune.profiler.runtime`; used by the measurements, the validation and
``spectune generate``.
"""
