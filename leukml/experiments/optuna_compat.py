"""Optuna's private names that leukml relies on, in one place, each failing loudly with Optuna's
version when an upgrade takes it away (``tests/test_compat.py`` calls every one).

A trial's storage and id: a worker records a claimed trial's heartbeat under its own lock and reads
the system attributes of a retried trial, which ``optuna.Trial`` does not expose.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage


class OptunaChanged(RuntimeError):
    """A private Optuna API that leukml uses is gone or changed."""


def _get(trial: optuna.Trial, what: str):
    try:
        value = trial
        for part in what.split("."):
            value = getattr(value, part)
        return value
    except AttributeError as exc:
        raise OptunaChanged(
            f"optuna {optuna.__version__}: Trial.{what} is gone ({exc}); "
            "leukml/experiments/optuna_compat.py needs updating for this Optuna"
        ) from exc


def trial_id(trial: optuna.Trial) -> int:
    """The trial's id in its storage (not its number in the study)."""
    return int(_get(trial, "_trial_id"))


def storage_of(trial: optuna.Trial) -> BaseStorage:
    """The storage of the trial's study."""
    return _get(trial, "study._storage")
