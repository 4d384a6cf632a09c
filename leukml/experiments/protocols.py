"""Evaluation protocols as plans of trainings: cross-validation by subject (`leukml cv`) and the same
configuration under the image, subject and official splits (`leukml protocols`), and their summaries.

No MLflow and no Keras here: ``leukml.workflows`` trains the plans, ``tracking`` writes what they sum up to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leukml.analysis.comparison import REFERENCE, gap_text
from leukml.analysis.uncertainty import Interval
from leukml.common import options
from leukml.common.errors import LeukmlError, OptionError
from leukml.common.options import option
from leukml.training.config import TrainConfig

# the split options `cv` sets per fold itself (``option(set_by=...)``): it takes every other `train` option
SPLIT_OPTIONS = options.set_by(TrainConfig, "cv")
# and those `protocols` sets per protocol (the same, and the pool every protocol draws from)
PROTOCOLS_SETS = options.set_by(TrainConfig, "protocols")
# the protocols `leukml protocols` compares, in order; official only when the data has its test set
COMPARED = ("image", "subject", "official")
# metrics summed up per fold and shown per protocol, the challenge's metric first
HEADLINE = (
    "test_f1_weighted",
    "test_accuracy",
    "test_balanced_accuracy",
    "test_sensitivity",
    "test_specificity",
)


def _folds(text: str | int) -> str:
    text = str(text).strip().lower()
    if text != "official" and not (text.isdigit() and int(text) >= 2):
        raise OptionError(
            f"folds={text!r}; give a number of folds (at least 2) or official (the C-NMC release's folds)"
        )
    return text


@dataclass(frozen=True)
class CvConfig:
    """A cross-validation: ``base`` is the training of every fold, its split set per fold."""

    base: TrainConfig
    folds: str = option(
        "5",
        "A number K of folds grouped by subject and stratified by class (scikit-learn's "
        "StratifiedGroupKFold), or official: each C-NMC training fold held out in turn.",
        parse=_folds,
    )

    def __post_init__(self) -> None:
        _folds(self.folds)

    @classmethod
    def of(cls, base: dict | None = None, **values) -> CvConfig:
        return options.build(cls, {**values, "base": TrainConfig.of(**(base or {}))})

    def fold_configs(self, official_folds: list[int]) -> list[tuple[int, TrainConfig]]:
        """(fold, its training) for every fold; ``official_folds``: the folds the data has."""
        if self.folds == "official":
            if len(official_folds) < 2:
                raise LeukmlError(
                    f"--folds official needs the C-NMC training layout .../fold_<k>/{{all,hem}}/ with at "
                    f"least two folds; this data has {len(official_folds)}: give a number of folds, e.g. 5"
                )
            return [(k, self.base.replace(method="fold", test_fold=k)) for k in official_folds]
        k = int(self.folds)
        return [(i, self.base.replace(method="kfold", folds=k, test_fold=i)) for i in range(k)]


def compared_protocols(has_preliminary_set: bool) -> tuple[str, ...]:
    """The splits `leukml protocols` trains under: image, subject, and official when it can."""
    return COMPARED if has_preliminary_set else COMPARED[:-1]


def cv_summary(folds: list[dict[int, dict[str, float]]]) -> dict[str, dict[int, float]]:
    """``cv_mean_<metric>`` and ``cv_std_<metric>`` per milestone epoch over the folds' milestone
    metrics (population std). A fold whose value is NaN (its test side has one class: no AUC) is
    left out of that metric's mean, and a metric NaN on every fold is left out."""
    out: dict[str, dict[int, float]] = {}
    epochs = sorted(set.intersection(*(set(f) for f in folds))) if folds else []
    for epoch in epochs:
        names = sorted(set.intersection(*(set(f[epoch]) for f in folds)))
        for name in names:
            values = np.array([f[epoch][name] for f in folds], dtype=float)
            values = values[~np.isnan(values)]
            if len(values):
                out.setdefault(f"cv_mean_{name}", {})[epoch] = float(values.mean())
                out.setdefault(f"cv_std_{name}", {})[epoch] = float(values.std())
    return out


def fold_table(rows: list[dict]) -> str:
    """The per-fold table as CSV: one row per fold (fold, run_id, sizes, last-milestone metrics)."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(_cell(row.get(k, "")) for k in header))
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


SHORT = {
    "test_f1_weighted": "f1_w",
    "test_accuracy": "acc",
    "test_balanced_accuracy": "bal_acc",
    "test_sensitivity": "sens",
    "test_specificity": "spec",
}  # column headings of the printed tables


def _values(metrics: dict[str, float]) -> str:
    """The headline metrics as table cells; ``–`` for one not there (a milestone not reached)."""
    return "  ".join(f"{metrics[m]:>9.4f}" if m in metrics else f"{'–':>9}" for m in HEADLINE)


def cv_lines(
    folds: list[tuple[str, str, dict[str, float]]], summary: dict[str, dict[int, float]], last: int
) -> list[str]:
    """The cross-validation as printed: one row per (fold, run id, metrics at ``last``), then the
    mean and std over the folds, and the pooled metrics with their 95% intervals."""
    lines = [f"{'fold':>4}  {'run':<32}  " + "  ".join(f"{SHORT.get(m, m):>9}" for m in HEADLINE)]
    lines += [f"{fold:>4}  {run_id:<32}  " + _values(values) for fold, run_id, values in folds]
    for what in ("mean", "std"):
        row = {
            m: summary[f"cv_{what}_{m}"][last] for m in HEADLINE if last in summary.get(f"cv_{what}_{m}", {})
        }
        lines.append(f"{what:>4}  {'':<32}  " + _values(row))
    pooled = []
    for m in HEADLINE:
        name = f"cv_pooled_{m.removeprefix('test_')}"
        if last in summary.get(name, {}):
            interval = Interval(summary[f"{name}_ci_low"][last], summary[f"{name}_ci_high"][last])
            pooled.append(f"{SHORT.get(m, m)} {summary[name][last]:.3f} {interval}")
    if pooled:
        lines.append(
            f"pooled over every fold's test cells, 95% interval (subjects resampled): {', '.join(pooled)}"
        )
    return lines


def protocol_lines(rows: list[tuple[str, str, dict[str, float], str]]) -> list[str]:
    """The protocols as printed: one row per (protocol, run id, metrics at the last milestone,
    sizes), with the accuracy's gap to the reference protocol (``comparison.gap``), and the
    training and test sizes under it."""
    reference = next((values for key, _, values, _ in rows if key == REFERENCE), {})
    lines = [f"{'split':<9}  {'run':<32}  " + "  ".join(f"{SHORT.get(m, m):>9}" for m in HEADLINE)]
    for key, run_id, values, sizes in rows:
        difference = gap_text(values.get("test_accuracy"), reference.get("test_accuracy"))
        shown = (
            f"  ({difference.replace(' vs ', ' accuracy vs ')})" if key != REFERENCE and difference else ""
        )
        lines += [f"{key:<9}  {run_id:<32}  " + _values(values) + shown, f"{'':<9}  {sizes}"]
    return lines
