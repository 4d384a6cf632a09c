"""Optuna's own figures of a study (matplotlib; plotly is not a dependency). No MLflow here.

Optuna draws an empty figure, and logs a warning, where a figure says nothing (no complete trial,
nothing that varies): such a figure is not drawn, and the reason is returned instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from matplotlib import pyplot
from matplotlib.figure import Figure
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from leukml.analysis.study import StudySummary

FIGURES = ("optimization_history", "param_importances", "parallel_coordinate")


def _why_not(name: str, complete: list[optuna.trial.FrozenTrial]) -> str | None:
    """Why a figure of these complete trials would say nothing; None if it can be drawn."""
    if not complete:
        return "no complete trial yet"
    if name == "optimization_history":
        return None
    if len(complete) < 2:
        return f"{len(complete)} complete trial; it needs at least 2"
    names = {p for t in complete for p in t.params}
    varying = [p for p in names if len({repr(t.params.get(p)) for t in complete}) > 1]
    if not varying:
        return f"no parameter takes more than one value in the {len(complete)} complete trials"
    return None


def _draw(name: str, study: optuna.Study) -> Figure:
    draw: dict[str, Callable[[], object]] = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(study),
        "param_importances": lambda: optuna_plots.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0)
        ),
        "parallel_coordinate": lambda: optuna_plots.plot_parallel_coordinate(study),
    }
    with warnings.catch_warnings():
        # these functions are marked experimental, and matplotlib warns about a one-value axis
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Attempting to set identical")
        figure = draw[name]().figure
    pyplot.close(figure)  # pyplot would keep it (Optuna draws there); a closed figure still saves
    return figure


def study_figures(study: optuna.Study) -> tuple[dict[str, Figure], dict[str, str]]:
    """The figures of ``FIGURES`` that can be drawn, by name, and why each other one was not.

    Optuna draws them with pyplot; they are closed there already (they still save).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures, skipped = {}, {}
    for name in FIGURES:
        reason = _why_not(name, complete)
        if reason is None:
            try:
                figures[name] = _draw(name, study)
            except Exception as exc:  # a figure is a by-product: the search's results stand without it
                reason = f"drawing failed: {type(exc).__name__}: {exc}"
        if reason is not None:
            skipped[name] = reason
    return figures, skipped


def readme(figures: dict[str, Figure], skipped: dict[str, str], n_trials: int) -> str:
    """The note logged beside the figures: what is there, and why anything is missing."""
    lines = [f"Optuna's figures of the study, drawn when this search ended ({n_trials} trials then)."]
    lines += [f"{name}.png" for name in figures]
    lines += [f"{name}.png: not drawn: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def study_summary(study: optuna.Study) -> StudySummary:
    """The study's best trial, its trials as CSV, and Optuna's figures with why any is missing."""
    best = None
    if any(t.state == TrialState.COMPLETE for t in study.trials):
        best = study.best_trial
    figures, skipped = study_figures(study)
    return StudySummary(
        best_params={f"best.{k}": v for k, v in best.params.items()} if best else {},
        best_value=best.value if best else None,
        best_run_id=best.user_attrs.get("mlflow_run_id") if best else None,  # none for a trial added by hand
        trials_csv=study.trials_dataframe().to_csv(index=False),
        figures=figures,
        readme=readme(figures, skipped, len(study.trials)),
    )
