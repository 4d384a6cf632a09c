"""One training run: its configuration (``config``, ``recipe``), the prepared data, the input
sources and the feature cache, the frozen bases kept across trainings, the device side, the
compiled epoch, the stages and the epoch loop, checkpoints (by time, and on SIGTERM:
``termination``), evaluation, the sink interface (``sinks``: ``MetricSink``, ``Milestone``), and
``trainer.train``.

May import ``common``, ``reference``, ``data`` and ``model``. Keras and numpy only: no MLflow, no
Optuna, no direct TensorFlow or JAX outside ``device``. Results leave through a ``MetricSink``
(``sinks``), so training knows no writer.
"""
