"""MLflow: the tracking URI and the default experiment (``uri``), the writer of a run's lifecycle,
params, tags and model (``writer``), the metric sink (``sink``), reading runs back (``reader``),
runs that outlived their process and studies' links (``recovery``), the tracker handed to the
workflows (``tracker``: what one must do, no MLflow; ``mlflow_tracker``: MLflow's), and the report
of tracked runs (``reports``: no backend). It writes, reads and recovers runs; what is trained or
planned (``leukml.workflows``) is above it.

May import every layer below but ``training.trainer`` and ``experiments``. With ``serving`` and
``cli``, the only layers that import MLflow; no Optuna (a study reaches it as
``analysis.study.StudySummary``).
"""
