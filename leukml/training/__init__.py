"""One training run: its configuration (``config``, ``recipe``), the prepared data, the input
sources and the feature cache, the frozen bases kept across trainings, the device side, the
compiled epoch, the stages and the epoch loop, checkpoints (by time, and on SIGTERM:
``termination``), evaluation, the sink interface (``sinks``: ``MetricSink``, ``Milestone``),
``trainer.train``, and what runs the code (``runtime``: backend, device, precision, the backend's
requirements).

May import ``common``, ``reference``, ``data`` and ``model``. Keras and numpy: no MLflow, no Optuna.
A backend's own module (TensorFlow, JAX, torch) only in the three modules that speak to the device,
each importing it only on that backend: ``device`` (transfers, compiled forward passes, memory),
``compiled`` (the epoch as one compiled program) and ``runtime`` (what the device is). Results
leave through a ``MetricSink`` (``sinks``), so training knows no writer.
"""
