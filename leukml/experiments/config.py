"""A search's configuration: the options every trial shares (a ``TrainConfig``) and the search's own."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from leukml.common import options
from leukml.common.errors import OptionError
from leukml.common.options import option
from leukml.model.archs import ARCHS
from leukml.training.config import OPTIMIZERS, TrainConfig

MODES = ("grid", "extended")
PRUNERS = ("median", "none")
HEARTBEAT_S = 30  # a killed worker's trial is marked failed 3 heartbeats later (90 s)
# an extended search selects on validation, never on test: its share when none is given
EXTENDED_VAL_FRACTION = 0.1


def storage_url(storage: str | None) -> str:
    """The Optuna storage a search uses: ``storage``, else ``$OPTUNA_STORAGE``, else ``sqlite:///optuna.db``."""
    return storage or os.environ.get("OPTUNA_STORAGE") or "sqlite:///optuna.db"


def _names(text: str | tuple) -> tuple[str, ...]:
    """``"vgg16,resnet50"`` -> ``("vgg16", "resnet50")``."""
    return text if isinstance(text, tuple) else tuple(p for p in text.replace(" ", "").split(",") if p)


@dataclass(frozen=True)
class SearchConfig:
    """A search: ``base`` holds the options every trial shares; the search varies the rest."""

    base: TrainConfig
    mode: str = option(
        "grid",
        "grid: the paper's arch x optimizer grid; extended: TPE over a wider space.",
        choices=MODES,
    )
    archs: tuple[str, ...] = option(("vgg16", "resnet50"), "Architectures searched.", parse=_names)
    optimizers: tuple[str, ...] = option(("adam", "rmsprop"), "Optimizers searched.", parse=_names)
    trials: int = option(20, "Trials (extended mode).")
    storage: str = option(
        "",
        "Optuna storage URL (default $OPTUNA_STORAGE, else sqlite:///optuna.db; postgresql://... too).",
    )
    study_name: str = option("", "Study to create or join (default: a new leukml-<mode>-<time> study).")
    pruner: str = option("median", "Pruner for extended mode.", choices=PRUNERS)
    heartbeat: int = option(
        HEARTBEAT_S,
        "Seconds between a trial's heartbeats; a worker silent for 3 of them is presumed dead and its "
        "grid cell is retried by another worker.",
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptionError(f"mode={self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.pruner not in PRUNERS:
            raise OptionError(f"pruner={self.pruner!r}; choose one of: {', '.join(PRUNERS)}")
        for name, chosen, table in (
            ("archs", self.archs, ARCHS),
            ("optimizers", self.optimizers, OPTIMIZERS),
        ):
            bad = [c for c in chosen if c not in table]
            if bad or not chosen:
                raise OptionError(
                    f"{name}={','.join(chosen)!r}: unknown {bad}; choose from: {', '.join(table)}"
                )
        if self.trials < 1:
            raise OptionError(f"trials={self.trials}; use at least 1")
        if self.heartbeat < 1:
            raise OptionError(f"heartbeat={self.heartbeat}; use at least 1 second")

    @classmethod
    def of(cls, base: dict | None = None, **values) -> SearchConfig:
        """A search from option names: ``base`` the trials' training options (``TrainConfig.of``),
        the rest the search's own. An extended search without a ``val_fraction`` selects on
        ``EXTENDED_VAL_FRACTION`` of the images, never on test."""
        base = dict(base or {})
        if values.get("mode") == "extended" and base.get("val_fraction") in (None, ""):
            base["val_fraction"] = EXTENDED_VAL_FRACTION
        return options.build(cls, {**values, "base": TrainConfig.of(**base)})

    @property
    def storage_url(self) -> str:
        return storage_url(self.storage)

    @property
    def name(self) -> str:
        return self.study_name or f"leukml-{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
