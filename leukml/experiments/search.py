"""Searches with Optuna: the paper's grid and wider TPE searches. No MLflow here.

Each trial's training goes through a ``run_trial`` callable (the search workflow supplies one that
makes a nested tracked run), so this module only decides *what* to train and when to stop.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import keras
import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.stores import StoreError, store_problem, unknown_scheme
from leukml.data.splits import Split
from leukml.experiments.config import HEARTBEAT_S, SearchConfig
from leukml.experiments.optuna_compat import storage_of, trial_id
from leukml.experiments.space import search_objective, selection_metric, suggest
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.sinks import EarlyStop, MetricSink, Milestone
from leukml.training.trainer import TrainResult

Study = optuna.Study  # what a search returns, for the layers above that do not import Optuna


def selection_value(result: TrainResult, config: TrainConfig) -> float:
    """The trial's objective: ``selection_metric`` of its split, of the model the run returns: at
    the last milestone on test (no early stopping nor keep=best there: both need validation), else
    the validation accuracy of the epoch it keeps (the best, the last run, or where it stopped)."""
    if result.prepared.split.selection_on_test:
        return result.milestones[config.milestones[-1]]["test_accuracy"]
    return result.history["val_accuracy"][result.model_epoch - 1]


class TrialReporter(MetricSink):
    """A metric sink that reports the selection metric at each milestone and prunes."""

    def __init__(self, trial: optuna.Trial, config: TrainConfig) -> None:
        self.trial, self.config, self.val_accuracy = trial, config, float("nan")
        self.selection_on_test = False  # the split's, set by log_data before any epoch

    def log_data(self, dataset, split: Split) -> None:
        self.selection_on_test = split.selection_on_test

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.val_accuracy = metrics.get("val_accuracy", float("nan"))

    def log_milestone(self, milestone: Milestone) -> None:
        value = milestone.metrics["test_accuracy"] if self.selection_on_test else self.val_accuracy
        self.trial.report(value, milestone.epoch)
        if self.trial.should_prune():
            raise EarlyStop(
                f"pruned at epoch {milestone.epoch} ({selection_metric(self.selection_on_test)} {value:.4f})"
            )


# (config, tags, pruning reporter, the worker's frozen bases) -> (run id, result)
RunTrial = Callable[[TrainConfig, dict[str, str], TrialReporter, BaseCache], tuple[str, TrainResult]]


def make_storage(url: str, heartbeat: int = HEARTBEAT_S) -> RDBStorage:
    """An RDB storage with heartbeats: a trial whose worker died is failed and retried.

    Raises:
        StoreError: a storage that is not a database, corrupted, read-only or full.
        ValueError: a URL whose scheme no database driver knows.
    """
    try:
        return _open_storage(url, heartbeat)
    except sqlalchemy.exc.ArgumentError:  # NoSuchModuleError too: garbage://, a typo'd scheme
        raise LeukmlError(unknown_scheme(url, "--storage")) from None
    except sqlalchemy.exc.DatabaseError as exc:
        said = store_problem(url, "--storage", str(exc.orig or exc).splitlines()[0])
        if said is None:  # a server that does not answer: the CLI words it
            raise
        raise StoreError(said) from None


def _open_storage(url: str, heartbeat: int) -> RDBStorage:
    for attempt in range(3):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except sqlalchemy.exc.IntegrityError:  # workers starting at once on an empty database race
            if attempt == 2:  # to create Optuna's schema; the loser finds it there a moment later
                raise
            time.sleep(1 + attempt)


def make_study(search: SearchConfig, storage: RDBStorage) -> optuna.Study:
    if search.mode == "grid":  # cells are claimed explicitly (see run_grid): the sampler only stores them
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=search.base.seed)
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=search.base.seed)
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
            if search.pruner == "median"
            else optuna.pruners.NopPruner()
        )
    study = optuna.create_study(
        study_name=search.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    with warnings.catch_warnings():  # marked experimental (since Optuna 3.2): a warning per search is noise
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # named, the study's value reads as what it is in its figures, trials tables and dashboard
        study.set_metric_names([search_objective(search)])
    return study


def _objective(search: SearchConfig, study_name: str, run_trial: RunTrial, bases: BaseCache):
    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        config = search.base.replace(**suggest(trial, search))
        tags = {schema.STUDY_NAME: study_name, schema.TRIAL_NUMBER: str(trial.number)}
        retry_of = storage_of(trial).get_trial_system_attrs(trial_id(trial)).get("failed_trial")
        retry_of = trial.user_attrs.get("retry_of") if retry_of is None else retry_of
        if retry_of is not None:  # a cell re-queued after its worker died or was interrupted
            tags[schema.RETRY_OF] = str(retry_of)
        try:
            run_id, result = run_trial(config, tags, TrialReporter(trial, config), bases)
        except EarlyStop as stop:
            raise optuna.TrialPruned(str(stop)) from None
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("selection_metric", selection_metric(result.prepared.split.selection_on_test))
        return selection_value(result, config)

    return objective


Say = Callable[[str], None]  # where a search's progress lines go (the console), or nowhere


def _silent(text: str) -> None:
    pass


def _progress(say: Say):
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        took = trial.duration.total_seconds() if trial.duration else float("nan")
        value = f"{trial.value:.4f}" if trial.value is not None else trial.user_attrs.get("error", "-")
        say(f"trial {trial.number} {trial.state.name} {trial.params} value={value} ({took:.1f} s)")

    return report


def run_search(search: SearchConfig, run_trial: RunTrial, say: Say = _silent) -> optuna.Study:
    """Run (or join, with the same storage and study name) a search until it is done; progress
    lines go to ``say``. This worker's trials share one ``BaseCache``: a frozen base is built
    once per arch (and weights, size, precision, seed)."""
    storage = make_storage(search.storage_url, search.heartbeat)
    study = make_study(search, storage)
    objective = _objective(search, study.study_name, run_trial, BaseCache())
    if search.mode == "grid":
        run_grid(study, storage, search, objective, say)
    else:
        study.optimize(
            objective,
            n_trials=search.trials,
            catch=(Exception,),
            callbacks=[_progress(say)],
            show_progress_bar=say is not _silent,
        )
    return study


# -- the grid, shared by any number of workers -------------------------------------------------------
# Each worker claims one free cell at a time under a lock held in the storage's database, so no
# cell is trained twice. A worker that dies stops beating; three heartbeats later any live worker
# fails its trial, Optuna's retry callback re-queues the cell, and a live worker trains it. A
# worker with nothing left to claim waits while other workers' trials are still running.

_WAIT = object()


def _cell(trial: optuna.trial.FrozenTrial) -> tuple[str, str]:
    """The cell a trial was enqueued for (a trial that failed while suggesting, e.g. a worker whose
    --archs / --optimizers differ from the study's, has only some params: its cell is still taken)."""
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    return params.get("arch"), params.get("optimizer")


def _free_cells(trials: list, search: SearchConfig) -> list[tuple[tuple[str, str], int | None]]:
    """The cells nobody has taken, each with the number of its last interrupted trial (Ctrl-C,
    SIGTERM: trained again, from that trial's checkpoint where there is one) or None. A cell whose
    training raised stays failed, reported."""
    taken, interrupted = set(), {}
    for t in trials:
        if t.state == TrialState.FAIL and t.system_attrs.get("interrupted"):
            interrupted[_cell(t)] = max(t.number, interrupted.get(_cell(t), -1))
        else:
            taken.add(_cell(t))
    cells = [(a, o) for a in search.archs for o in search.optimizers if (a, o) not in taken]
    return [(cell, interrupted.get(cell)) for cell in cells]


@contextmanager
def _claim_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """A PostgreSQL advisory lock per study; SQLite allows one writer (and one worker) anyway."""
    if storage.engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    with storage.engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _claim(study: optuna.Study, search: SearchConfig):
    """A RUNNING trial for a cell nobody has taken, ``_WAIT``, or None when the grid is done."""
    with warnings.catch_warnings():  # fail_stale_trials is marked experimental: once per claim is noise
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # a dead worker's trial -> FAIL, and its retry queued as WAITING
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.WAITING for t in trials):
        free = _free_cells(trials, search)
        if not free:
            return _WAIT if any(t.state == TrialState.RUNNING for t in trials) else None
        (arch, optimizer), retry_of = free[0]
        retry = {"retry_of": retry_of} if retry_of is not None else None
        study.enqueue_trial({"arch": arch, "optimizer": optimizer}, user_attrs=retry)
    with warnings.catch_warnings():  # heartbeats are kept by _Heartbeat, not by optimize()
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask()
    storage_of(trial).record_heartbeat(trial_id(trial))  # under the lock: a claim is never beatless
    return trial


class _Heartbeat(threading.Thread):
    def __init__(self, storage: RDBStorage, trial_id: int, interval: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{trial_id}")
        self.storage, self.trial_id, self.interval, self.done = storage, trial_id, interval, threading.Event()

    def run(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.done.wait(self.interval):
                return


def _run_claimed(
    study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, objective, heartbeat: int, say: Say
) -> None:
    beat = _Heartbeat(storage, trial_id(trial), heartbeat)
    beat.start()
    value, state = None, TrialState.COMPLETE
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except Exception as exc:  # recorded on the trial; the grid goes on
        say(f"trial {trial.number} failed: {type(exc).__name__}: {exc}")
        state = TrialState.FAIL
    except BaseException:  # Ctrl-C, SIGTERM: the trial fails, the worker stops; a rerun retrains it
        beat.done.set()
        storage.set_trial_system_attr(trial_id(trial), "interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    finally:
        beat.done.set()
        beat.join()
    try:
        frozen = study.tell(
            trial,
            value if state == TrialState.COMPLETE else None,
            state=None if state == TrialState.COMPLETE else state,
        )
    except optuna.exceptions.UpdateFinishedTrialError:  # its heartbeat went stale: already re-queued
        say(
            f"trial {trial.number} was failed by another worker (no heartbeat for "
            f"{3 * heartbeat} s); its result is dropped"
        )
        return
    _progress(say)(study, frozen)


def run_grid(
    study: optuna.Study, storage: RDBStorage, search: SearchConfig, objective, say: Say = _silent
) -> None:
    """Train free cells until none is left and no other worker's trial is running."""
    waiting_said = False
    while True:
        with _claim_lock(storage, study.study_name):
            trial = _claim(study, search)
        if trial is None:
            return
        if trial is _WAIT:
            if not waiting_said:
                say("grid: every cell is taken; waiting for other workers' trials")
                waiting_said = True
            time.sleep(search.heartbeat)
            continue
        waiting_said = False
        _run_claimed(study, storage, trial, objective, search.heartbeat, say)


def incomplete_cells(study: optuna.Study, search: SearchConfig) -> list[tuple[str, str]]:
    """Grid cells without a COMPLETE trial (empty when the grid is done)."""
    done = {
        (t.params.get("arch"), t.params.get("optimizer"))
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    }
    return [(a, o) for a in search.archs for o in search.optimizers if (a, o) not in done]
