"""Comparing tracked runs: runs as plain records, configurations and protocols side by side (the
leakage gap), the report and its page, the figures, a search's study as plain data (``study``).

May import ``common``, ``reference``, ``data``, ``model`` and ``training`` (their configs and
evaluation types). Works on plain records: no MLflow (the tracking layer fetches the runs), no
Optuna, no Keras, TensorFlow or JAX.
"""
