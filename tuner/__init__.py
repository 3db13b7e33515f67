"""spectune's tuner: Optuna search over the simulator (no CLI, no torch).

``space`` (the only ``trial.suggest_*``), ``objective`` + ``evaluate`` (scoring a config),
``study`` (storages, resume), ``search`` + ``band`` (the recommend pipeline and its
confidence band), ``schedule`` (k per batch band), ``plan`` (capacity), ``export`` (engine
configs: vLLM, SGLang, TensorRT-LLM, HF) and ``plots``.

May import :mod:`spectune.simulator` only; imported by :mod:`spectune.validation` and the
application.
"""
