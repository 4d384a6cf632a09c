"""The training recipe beyond the paper's: augmentation, test-time augmentation, fine-tuning of the
base's top layers, early stopping and which epoch's weights a run keeps. Every default is the paper's.

No Keras here (``leukml.training.trainer`` carries the recipe out), so the command line can read these
options without loading a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from leukml.common.errors import OptionError
from leukml.common.options import option
from leukml.data.augment import AUGMENTS, TTAS, Augmentation, TestTime

KEEPS = ("last", "best")
CALIBRATIONS = ("none", "temperature")


@dataclass(frozen=True)
class RecipeConfig:
    """What a training does beyond the paper's recipe (frozen base, head only, all epochs, the last
    epoch's weights). Options that need a validation split are checked by ``TrainConfig``."""

    augment: str = option(
        "none",
        "Training-input augmentation: none (the paper); dihedral: one of the 8 quarter turns / mirrors "
        "per image and epoch (with the feature cache, from the 8 variants' cached features: exact, at "
        "head-only cost); full: dihedral + zoom, brightness, contrast and hue jitter, trained end to "
        "end through the base every epoch (no feature cache).",
        choices=AUGMENTS,
    )
    tta: str = option(
        "none",
        "Test-time augmentation: dihedral adds *_tta twins of every test metric, from the probabilities "
        "averaged over the 8 dihedral variants of each test image.",
        choices=TTAS,
    )
    fine_tune_layers: int = option(
        0,
        "Fine-tuning (0 = the paper's frozen base): from --fine-tune-from on, the base's top N layers "
        "that have weights (BatchNormalization not counted: it stays frozen, in inference mode) and "
        "the head train end to end on images at --fine-tune-lr.",
    )
    fine_tune_from: int | None = option(
        None,
        "First epoch of fine-tuning (with --fine-tune-layers); earlier epochs train the head alone.",
        unset="the second half: epochs // 2 + 1",
        parse=int,
        fine_tuning=True,
    )
    fine_tune_lr: float = option(
        1e-5,
        "Constant learning rate of one new optimizer (of --optimizer's kind) for fine-tuning.",
        fine_tuning=True,
    )
    early_stopping: int | None = option(
        None,
        "Stop when no epoch has beaten the best validation accuracy (ties: lower validation loss) for "
        "this many epochs; needs --val-fraction (never looks at test). Later milestones are skipped.",
        unset="off",
        parse=int,
    )
    keep: str = option(
        "last",
        "Weights the run returns and logs: last (the paper) or best, the epoch of the best validation "
        "accuracy (ties: lower validation loss, then the earlier); best needs --val-fraction.",
        choices=KEEPS,
    )
    calibrate: str = option(
        "none",
        "Calibration of the predicted probabilities: none (the paper); temperature: one temperature "
        "per milestone, fitted on the validation split (minimising its log loss; needs --val-fraction), "
        "divides the model's logit: the test metrics' probabilities, the predictions file and the "
        "promoted model use it (labels, counts and AUC unchanged; the uncalibrated ECE is kept).",
        choices=CALIBRATIONS,
    )

    def __post_init__(self) -> None:
        Augmentation(self.augment), TestTime(self.tta)  # refused here, naming the choices
        if self.keep not in KEEPS:
            raise OptionError(f"keep={self.keep!r}; choose one of: {', '.join(KEEPS)}")
        if self.calibrate not in CALIBRATIONS:
            raise OptionError(f"calibrate={self.calibrate!r}; choose one of: {', '.join(CALIBRATIONS)}")
        if self.fine_tune_layers < 0:
            raise OptionError(f"fine_tune_layers={self.fine_tune_layers}; use 0 (frozen base) or more")
        if self.fine_tune_from is not None and self.fine_tune_from < 1:
            raise OptionError(f"fine_tune_from={self.fine_tune_from}; use an epoch >= 1")
        if self.fine_tune_lr <= 0:
            raise OptionError(f"fine_tune_lr={self.fine_tune_lr}; use a positive value")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise OptionError(f"early_stopping={self.early_stopping}; use a patience of at least 1 epoch")

    def check_run(self, epochs: int, val_fraction: float) -> None:
        """Refuse what cannot work with the run's ``epochs`` and requested ``val_fraction``.

        Raises:
            ValueError: fine-tuning from after the last epoch; early stopping, ``keep=best`` or
                ``calibrate=temperature`` without a validation split (they fit or select on
                validation, never on test).
        """
        if self.fine_tune_from is not None and self.fine_tune_from > epochs:
            raise OptionError(
                f"fine_tune_from={self.fine_tune_from} is after the last epoch; use 1..{epochs}"
            )
        if val_fraction > 0:
            return
        if self.early_stopping is not None:
            raise OptionError(
                f"early_stopping={self.early_stopping} watches the validation accuracy, never the test "
                "split, and this run has no validation split: add --val-fraction (e.g. 0.1)"
            )
        if self.keep == "best":
            raise OptionError(
                "keep=best picks the epoch on the validation split, never on test, and this run has no "
                "validation split: add --val-fraction (e.g. 0.1) or use --keep last"
            )
        if self.calibrate == "temperature":
            raise OptionError(
                "calibrate=temperature fits the temperature on the validation split, never on test, and "
                "this run has no validation split: add --val-fraction (e.g. 0.25) or use --calibrate none"
            )

    def fine_tune_epoch(self, epochs: int) -> int | None:
        """The first epoch of fine-tuning, or None without it."""
        if not self.fine_tune_layers:
            return None
        return self.fine_tune_from or epochs // 2 + 1

    @property
    def calibrates(self) -> bool:
        """Whether each milestone's probabilities are temperature-scaled (``calibrate``)."""
        return self.calibrate == "temperature"

    @property
    def augmentation(self) -> Augmentation:
        """``augment`` as the value the layers ask."""
        return Augmentation(self.augment)

    @property
    def test_time(self) -> TestTime:
        """``tta`` as the value the layers ask."""
        return TestTime(self.tta)

    @property
    def feature_cache_possible(self) -> bool:
        """Whether the frozen base's output per image (or per dihedral variant) is fixed: not when
        the augmentation jitters, drawing new inputs every epoch."""
        return not self.augmentation.jitters

    @property
    def variants_needed(self) -> bool:
        """Whether the 8 dihedral variants of every image are used (training draws or TTA)."""
        return self.augmentation.variants > 1 or self.test_time.variants > 1
