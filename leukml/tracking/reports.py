"""`leukml report`: the report of tracked runs, written to a folder and logged in the search parent
runs it covers. Reads runs back and draws (``leukml.analysis.report``): it imports neither the
training layer nor the Keras backend, so the command starts in MLflow's time, not TensorFlow's.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from leukml.tracking import reader
from leukml.tracking.uri import resolve_tracking_uri


def tracked_report(
    experiment: str | None,
    out: Path,
    tracking_uri: str | None = None,
    parent_run: str | None = None,
    study_name: str | None = None,
) -> tuple[Path, int]:
    """The report of an experiment's trainings (``reader.find_experiment``), of one search
    (``parent_run``) or of a study's every search, written to ``out`` and logged under ``report/``
    in the search parent run(s); returns (the Markdown file, the runs it read)."""
    from leukml.analysis.report import write_report  # matplotlib's figures: not for a training

    experiment = reader.experiment_name(experiment, tracking_uri)
    runs = reader.fetch_runs(experiment, parent_run, tracking_uri, study_name)
    parents = [parent_run] if parent_run else []
    title = f"experiment {experiment}" + (f", search {parent_run}" if parent_run else "")
    if study_name:
        parents = reader.study_parent_ids(experiment, study_name, tracking_uri)
        title += f", study {study_name} ({len(parents)} search run(s): {', '.join(parents)})"
    path = write_report(runs, out, title)
    for parent in parents:
        log_report_artifacts(parent, out, tracking_uri)
    return path, len(runs)


def log_report_artifacts(parent_run: str, folder: Path, tracking_uri: str | None = None) -> None:
    """A written report's files under ``report/`` in ``parent_run``."""
    MlflowClient(resolve_tracking_uri(tracking_uri)).log_artifacts(parent_run, str(folder), "report")
