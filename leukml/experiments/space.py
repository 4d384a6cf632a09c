"""What a search asks of each trial (``suggest``), read without a trial (``search_space``): the
options every trial sets itself and what the search maximises. No backend and no storage here:
the docs' reference and the command line read the space in a second."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leukml.experiments.config import SearchConfig
from leukml.model.archs import POOLINGS

if TYPE_CHECKING:
    import optuna


def selection_metric(selection_on_test: bool) -> str:
    """What a trial is selected and pruned on: the paper's test accuracy when its split has no
    validation images (``Split.selection_on_test``), else validation accuracy."""
    return "test_accuracy" if selection_on_test else "val_accuracy"


def suggest(trial: optuna.Trial, search: SearchConfig) -> dict:
    """Every ``suggest_*`` of a trial, as TrainConfig overrides."""
    if search.mode == "grid":
        return {
            "arch": trial.suggest_categorical("arch", list(search.archs)),
            "optimizer": trial.suggest_categorical("optimizer", list(search.optimizers)),
        }
    return {
        "arch": trial.suggest_categorical("arch", list(search.archs)),
        "optimizer": trial.suggest_categorical("optimizer", list(search.optimizers)),
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "dense_units": trial.suggest_categorical("dense_units", [128, 256, 512, 1024]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "pooling": trial.suggest_categorical("pooling", list(POOLINGS)),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
        # beyond the paper's recipe: dihedral turns (exact on cached features) and fine-tuning depth
        "augment": trial.suggest_categorical("augment", ["none", "dihedral"]),
        "fine_tune_layers": trial.suggest_categorical("fine_tune_layers", [0, 2, 4]),
    }


class SpaceRecorder:
    """Stands in for a trial to read the space ``suggest`` asks for: records each ``suggest_*``
    call (``asked``: name, then the choices or ``(low, high, log)``) and answers the first choice."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list | tuple[float, float, bool]]] = []

    def suggest_categorical(self, name: str, choices: list):
        self.asked.append((name, list(choices)))
        return choices[0]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, **kwargs) -> float:
        self.asked.append((name, (low, high, log)))
        return low


def search_space(search: SearchConfig) -> list[tuple[str, list | tuple[float, float, bool]]]:
    """What ``suggest`` asks of a trial of ``search``, in order (``SpaceRecorder.asked``)."""
    recorder = SpaceRecorder()
    suggest(recorder, search)
    return recorder.asked


def searched_options(search: SearchConfig) -> tuple[str, ...]:
    """The training options every trial of ``search`` sets itself (``suggest``'s): the base's values
    of these never act. Read from ``suggest``, so the two cannot drift apart."""
    return tuple(name for name, _ in search_space(search))


def search_objective(search: SearchConfig) -> str:
    """What the search maximises, from its plan: a requested validation split that comes out empty
    is refused, so every trial that trains selects on this (each trial's user attr says what it used)."""
    return selection_metric(not search.base.requests_validation)
