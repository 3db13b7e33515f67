"""Predicted vs live: the simulator's predictions checked against real engines.

``pipeline`` (:func:`~.pipeline.run_validation`: the whole run, resumable), ``matrix``
(which configs, workloads and loads are validated), ``runs`` (live runs and their
predictions, interleaved repeats), ``live_models`` (models, drafters and prompts for live
runs), ``profiles`` (latency profiles measured between live runs), ``acceptance``
(acceptance replayed on the validation workload), ``overhead`` + ``calibration`` (host
overheads fitted on calibration runs) and ``report`` (report.md, plot, JSON).

Uses :mod:`spectune.simulator`, :mod:`spectune.tuner` and :mod:`spectune.profiler`; nothing
below the application (:mod:`spectune.commands`) imports it.
"""
