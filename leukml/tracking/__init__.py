"""MLflow: the tracking URI and the default experiment (``uri``), the writer of a run's lifecycle,
params, tags and model (``writer``), the metric sink (``sink``), reading runs back (``reader``),
runs that outlived their process and studies' links (``recovery``), the tracked trainings and
searches (``runs``), and the report of tracked runs (``reports``: no backend).

May import every layer below. With ``serving`` and ``cli``, the only layers that import MLflow; no
Optuna (a study reaches it as ``experiments``' summary).
"""
