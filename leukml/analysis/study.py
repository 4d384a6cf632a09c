"""What a search's parent run shows of its study, as plain data: no Optuna here, so the tracking
layer that writes it imports no Optuna either (``leukml.experiments.figures.study_summary`` makes
it), and no layer above ``analysis`` is needed to name it."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure


@dataclass
class StudySummary:
    """What a search's parent run shows of its study, as plain data (the tracking layer writes it)."""

    best_params: dict[str, object]  # ``best.<name>``: the best trial's params
    best_value: float | None
    best_run_id: str | None  # the best trial's training run (any worker's)
    trials_csv: str
    figures: dict[str, Figure]
    readme: str
