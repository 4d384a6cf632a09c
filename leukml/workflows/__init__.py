"""Orchestration: what a command runs, composed of the layers below and handed a tracker. One
training tracked, or a failed one continued (``train``); a search with a tracked run per trial
(``search``); cross-validation by subject (``cv``); the compared protocols and their report
(``protocols``).

Each workflow takes the ``leukml.tracking.tracker.Tracker`` its runs go to as an argument (the CLI
hands it ``leukml.tracking.mlflow_tracker.MlflowTracker``), as a training takes its sinks, so a
workflow runs with any tracker, one that keeps its runs in memory included. May import every layer
below (``common`` up to ``tracking``); no MLflow, no Optuna.

Observers of every training: ``train.observe_every_training(make_sink)`` makes a sink join every
tracked training of the process from then on (tests hold a training at an epoch through it).
"""
