"""The profilers: measurements that become the simulator's YAML profiles.

``latency`` (+ ``grid``, ``samples``): forward latency over batch × query tokens × context,
interleaved passes, resumable; ``acceptance``: per-position and ranked acceptance and the
per-request spread of a drafter against a target on a prompt file.

Builds on :mod:`spectune.profiler.runtime` (and the native engine's drafters); writes the
schemas of :mod:`spectune.simulator.profile_schema`.
"""
