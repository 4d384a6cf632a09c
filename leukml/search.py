"""Searches with Optuna: the paper's grid and wider TPE searches. No MLflow here.

Each trial's training goes through a ``run_trial`` callable (the tracking layer supplies one that
makes a nested MLflow run), so this module only decides *what* to train and when to stop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from leukml.config import OPTIMIZERS, TrainConfig
from leukml.models import ARCHS, POOLINGS
from leukml.splits import Split
from leukml.training import EarlyStop, TrainResult

MODES = ("grid", "extended")
PRUNERS = ("median", "none")
HEARTBEAT_S, GRACE_S = 30, 90  # a killed worker's trial is marked failed ~90 s later


@dataclass(frozen=True)
class SearchConfig:
    """``base`` holds the options every trial shares; the search varies the rest."""

    base: TrainConfig
    mode: str = "grid"
    archs: tuple[str, ...] = ("vgg16", "resnet50")
    optimizers: tuple[str, ...] = ("adam", "rmsprop")
    trials: int = 20
    storage: str = ""
    study_name: str = ""
    pruner: str = "median"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner={self.pruner!r}; choose one of: {', '.join(PRUNERS)}")
        for name, chosen, table in (("archs", self.archs, ARCHS),
                                    ("optimizers", self.optimizers, OPTIMIZERS)):
            bad = [c for c in chosen if c not in table]
            if bad or not chosen:
                raise ValueError(f"{name}={','.join(chosen)!r}: unknown {bad}; choose from: "
                                 f"{', '.join(table)}")
        if self.trials < 1:
            raise ValueError(f"trials={self.trials}; use at least 1")

    @property
    def storage_url(self) -> str:
        return self.storage or "sqlite:///optuna.db"

    @property
    def name(self) -> str:
        return self.study_name or f"leukml-{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}"


def selection_metric(config: TrainConfig) -> str:
    """Validation accuracy when there is a validation split; else the paper's test accuracy."""
    return "test_accuracy" if config.selection_on_test else "val_accuracy"


def selection_value(result: TrainResult, config: TrainConfig) -> float:
    last = config.milestones[-1]
    if config.selection_on_test:
        return result.milestones[last]["test_accuracy"]
    return result.history["val_accuracy"][last - 1]


def suggest(trial: optuna.Trial, search: SearchConfig) -> dict:
    """Every ``suggest_*`` of a trial, as TrainConfig overrides."""
    if search.mode == "grid":
        return {"arch": trial.suggest_categorical("arch", list(search.archs)),
                "optimizer": trial.suggest_categorical("optimizer", list(search.optimizers))}
    return {
        "arch": trial.suggest_categorical("arch", list(search.archs)),
        "optimizer": trial.suggest_categorical("optimizer", list(search.optimizers)),
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "dense_units": trial.suggest_categorical("dense_units", [128, 256, 512, 1024]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "pooling": trial.suggest_categorical("pooling", list(POOLINGS)),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


class TrialReporter:
    """A metric sink that reports the selection metric at each milestone and prunes."""

    def __init__(self, trial: optuna.Trial, config: TrainConfig) -> None:
        self.trial, self.config, self.val_accuracy = trial, config, float("nan")

    def log_data(self, dataset, split: Split) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.val_accuracy = metrics.get("val_accuracy", float("nan"))

    def log_milestone(self, epoch: int, metrics: dict[str, float], confusion: np.ndarray) -> None:
        value = metrics["test_accuracy"] if self.config.selection_on_test else self.val_accuracy
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise EarlyStop(f"pruned at epoch {epoch} ({selection_metric(self.config)} {value:.4f})")


RunTrial = Callable[[TrainConfig, dict[str, str], TrialReporter], tuple[str, TrainResult]]


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats: a trial whose worker died is failed and retried."""
    return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


def make_study(search: SearchConfig) -> optuna.Study:
    if search.mode == "grid":
        sampler = optuna.samplers.GridSampler(
            {"arch": list(search.archs), "optimizer": list(search.optimizers)},
            seed=search.base.seed)
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=search.base.seed)
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
                  if search.pruner == "median" else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=search.name, storage=make_storage(search.storage_url),
                               sampler=sampler, pruner=pruner, direction="maximize",
                               load_if_exists=True)


def _objective(search: SearchConfig, study_name: str, run_trial: RunTrial):
    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        config = dataclasses.replace(search.base, **suggest(trial, search))
        tags = {"study_name": study_name, "trial_number": str(trial.number)}
        try:
            run_id, result = run_trial(config, tags, TrialReporter(trial, config))
        except EarlyStop as stop:
            raise optuna.TrialPruned(str(stop)) from None
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        trial.set_user_attr("mlflow_run_id", run_id)
        return selection_value(result, config)

    return objective


def _progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    took = (trial.duration.total_seconds() if trial.duration else float("nan"))
    value = f"{trial.value:.4f}" if trial.value is not None else trial.user_attrs.get("error", "-")
    print(f"trial {trial.number} {trial.state.name} {trial.params} value={value} "
          f"({took:.1f} s)", flush=True)


def run_search(search: SearchConfig, run_trial: RunTrial) -> optuna.Study:
    """Run (or join, with the same storage and study name) a search until it is done."""
    study = make_study(search)
    n_trials = len(search.archs) * len(search.optimizers) if search.mode == "grid" else search.trials
    study.optimize(_objective(search, study.study_name, run_trial), n_trials=n_trials,
                   catch=(Exception,), callbacks=[_progress], show_progress_bar=True)
    return study


def incomplete_cells(study: optuna.Study, search: SearchConfig) -> list[tuple[str, str]]:
    """Grid cells without a COMPLETE trial (empty when the grid is done)."""
    done = {(t.params.get("arch"), t.params.get("optimizer"))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    return [(a, o) for a in search.archs for o in search.optimizers if (a, o) not in done]
