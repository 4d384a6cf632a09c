"""Runs that outlived their process, and studies run by several workers: a dead worker's trial run
marked FAILED, a failed run found again and continued from its checkpoint, the search parents of a
study linked to each other."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.runfilter import tag_is, where
from leukml.tracking import heartbeat
from leukml.tracking.reader import study_parent_runs
from leukml.tracking.uri import resolve_tracking_uri
from leukml.training.config import TrainConfig


def fail_orphaned_trial_runs(study_name: str, trial_number: str) -> list[str]:
    """A killed worker leaves its trial's run RUNNING forever: mark it FAILED when the cell is
    retried; returns the ids of the trial's failed runs (those marked, and an interrupted one's)."""
    client, failed = MlflowClient(), []
    experiment_id = mlflow.active_run().info.experiment_id
    for run in client.search_runs(
        [experiment_id],
        filter_string=where(tag_is(schema.STUDY_NAME, study_name), tag_is(schema.TRIAL_NUMBER, trial_number)),
    ):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, schema.ERROR, "worker lost: no heartbeat; the trial was retried")
            client.set_terminated(run.info.run_id, "FAILED")
        if run.info.status in ("RUNNING", "FAILED"):
            failed.append(run.info.run_id)
    return failed


def checkpointed_run(run_ids: list[str], config: TrainConfig) -> str | None:
    """The newest of ``run_ids`` that saved a checkpoint of the training ``config`` describes (the
    same options), or None: a retried trial continues there instead of starting again."""
    client = MlflowClient()
    runs = sorted((client.get_run(r) for r in run_ids), key=lambda r: r.info.start_time, reverse=True)
    for run in runs:
        if schema.CHECKPOINT_EPOCH not in run.data.tags:
            continue
        logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{schema.CONFIG_JSON}")
        if TrainConfig.from_params(logged).as_dict() == config.as_dict():
            return run.info.run_id
    return None


def link_study_parents(study_name: str) -> list[str]:
    """Tag every search parent run of the study in the active run's experiment with all their ids
    (``study_parent_runs``), so each worker's parent leads to the others; returns the ids.

    Called when a search parent starts and when it ends: workers starting at the same moment may
    not see each other at the start, the last one to end sees everybody.
    """
    client = MlflowClient()
    experiment_id = mlflow.active_run().info.experiment_id
    ids = [r.info.run_id for r in study_parent_runs(client, experiment_id, study_name)]
    text = ",".join(ids)
    for run_id in ids:
        _set_tag_racing(client, run_id, schema.STUDY_PARENT_RUNS, text)
    return ids


def _set_tag_racing(client: MlflowClient, run_id: str, key: str, value: str, tries: int = 5) -> None:
    """``set_tag`` where other workers may set the same tag of the same run at the same moment: on
    PostgreSQL two first writes of a tag collide (unique violation, HTTP 400), and the loser only has
    to write again. A link that still cannot be written is skipped: it must not fail a search."""
    for attempt in range(tries):
        try:
            client.set_tag(run_id, key, value)
            return
        except mlflow.exceptions.MlflowException:
            time.sleep(0.1 * (attempt + 1))


RESUMABLE = ("FAILED", "KILLED")


def check_resumable(run_id: str, tracking_uri: str | None) -> None:
    """The refusals of ``resumable`` that need no claim on the run, read and written nowhere: no
    such run, a finished one, a failed one without a checkpoint. ``leukml train --resume`` says
    them before the backend's seconds of import (a RUNNING run is for ``resumable`` to judge: its
    lost attempt is marked first)."""
    run = _resume_candidate(run_id, tracking_uri)[1]
    if run.info.status != "RUNNING":
        _refuse_without_checkpoint(run)


def resumable(run_id: str, tracking_uri: str | None, folder: Path) -> tuple[TrainConfig, str, Path]:
    """(config, experiment name, checkpoint folder) of a FAILED or KILLED training run, or a
    RUNNING one whose process is gone (no heartbeat for ``heartbeat.stale_after_s()``), its last
    checkpoint downloaded into ``folder``. The run is claimed first: of two resumes at once, one
    goes on and the other is refused.

    Raises:
        ValueError: no such run, a run that is not a failed training, a live one, one another
            resume has claimed, or one without a checkpoint.
    """
    client, run = _resume_candidate(run_id, tracking_uri)
    if run.info.status == "RUNNING":
        heartbeat.take_over(client, run)  # refuses a live run; marks the lost attempt
    else:
        heartbeat.claim(client, run)
    _refuse_without_checkpoint(run)
    config = TrainConfig.from_params(mlflow.artifacts.load_dict(f"runs:/{run_id}/{schema.CONFIG_JSON}"))
    slot = run.data.tags.get(schema.CHECKPOINT_SLOT, schema.CHECKPOINT)
    local = client.download_artifacts(run_id, slot, str(folder))
    experiment = client.get_experiment(run.info.experiment_id).name
    return config, experiment, Path(local)


def _resume_candidate(run_id: str, tracking_uri: str | None) -> tuple[MlflowClient, Run]:
    """The run to continue, refused if there is none or it finished (or was never a training)."""
    if tracking_uri is not None or mlflow.active_run() is None:  # a search's trial: its store
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise LeukmlError(
            f"--resume {run_id}: no such run on {mlflow.get_tracking_uri()}; check the run id"
        ) from None
    status = run.info.status
    if status != "RUNNING" and status not in RESUMABLE:
        raise LeukmlError(
            f"--resume {run_id}: the run is {status}; only FAILED or KILLED runs continue (and RUNNING "
            "ones whose process is gone); it finished: nothing to resume"
        )
    return client, run


def _refuse_without_checkpoint(run: Run) -> None:
    if schema.CHECKPOINT_EPOCH not in run.data.tags:
        raise LeukmlError(
            f"--resume {run.info.run_id}: the run saved no checkpoint "
            f"({_no_checkpoint_yet(run.data.params)}): train it again"
        )


def _no_checkpoint_yet(params: dict[str, str]) -> str:
    """Why a run has no checkpoint, from its checkpoint options (a run older than
    ``checkpoint_minutes`` checkpointed by epochs alone)."""
    every = int(float(params.get("checkpoint_every", "0") or 0))
    minutes = float(params.get("checkpoint_minutes", "0") or 0)
    rules = [f"after {minutes:g} minutes of training"] if minutes > 0 else []
    rules += [f"every {every} epochs"] if every > 0 else []
    if not rules:
        return "it ran with --checkpoint-minutes 0 --checkpoint-every 0: checkpoints off"
    return f"it failed before its first, {' or '.join(rules)}"


def start_resumed_run(run_id: str, epoch: int) -> dict[str, set[int]]:
    """The continued run's tags (``resumed_from_epoch``; the failure's ``error`` tag moved to
    ``error_before_resume``), and the steps each of its metrics already has."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if schema.ERROR in run.data.tags:  # kept as history: why the run had to be continued
        client.set_tag(run_id, schema.ERROR_BEFORE_RESUME, run.data.tags[schema.ERROR])
        client.delete_tag(run_id, schema.ERROR)
    resumes = run.data.tags.get(schema.RESUMED_FROM_EPOCH)
    mlflow.set_tag(schema.RESUMED_FROM_EPOCH, f"{resumes},{epoch}" if resumes else str(epoch))
    return {key: {m.step for m in client.get_metric_history(run_id, key)} for key in run.data.metrics}
