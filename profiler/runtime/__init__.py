"""The model runtime: what runs a model on a device.

``config`` (architecture numbers from config.json), ``layers`` + ``model`` (a Llama / Qwen2
/ Mistral decoder in plain torch with early exit and tree masks), ``kvcache`` (preallocated,
ragged, copy-free rollback), ``checkpoint`` (Hugging Face format in and out), ``specs``
(model specs on the command line and the controllable demo pair), ``prompts`` (prompt files
and the byte tokenizer; no torch), ``device`` (device and thread choice) and ``timing``
(device-synchronised timers, device facts).

Imports nothing else of the profiler's; the rest of the profiler builds on it.
"""
