"""Adapters to real serving engines (vLLM first).

Each engine is one module behind one small contract: start it, run a workload, report
per-request timings and the spec-decode counters, stop it. The rest of spectune never
imports an engine package directly; only these adapters do.
"""
