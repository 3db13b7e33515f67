"""One module per ``spectune`` command; each exposes ``register(subparsers)``.

The application layer: it may import every package (simulator, tuner, profiler,
validation); commands that need torch import the profiler inside their handlers.
"""
