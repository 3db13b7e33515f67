"""The byte-level demo pair spectune ships (models/): corpus, training, evaluation.

``corpus`` (the Python standard library sources as bytes, a stable held-out split),
``train`` (recipes and the resumable training loop), ``evaluate`` (held-out loss and the
greedy-loop metric). Builds on :mod:`spectune.profiler.runtime`; only ``spectune profile
train-demo`` and the tests use it.
"""
