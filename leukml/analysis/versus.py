"""Whether a chosen run beats its runner-up by more than the noise: the chosen run's metric with its
95% interval, the runner-up's, and their difference with a paired interval (both runs' predictions
of the same test cells, the same subjects resampled for both). Plain records: no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leukml.analysis.uncertainty import CI_METRICS, Interval, paired_difference
from leukml.common import runschema as schema
from leukml.training.evaluation import Predictions


def interval_of(metrics: dict[str, float], metric: str) -> Interval | None:
    """A run's logged interval of ``metric`` (``<metric>_ci_low`` / ``_ci_high``), or None."""
    low, high = metrics.get(f"{metric}_ci_low"), metrics.get(f"{metric}_ci_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return None
    return Interval(low, high)


def with_interval(value: float, interval: Interval | None) -> str:
    """``0.650 [0.52, 0.78]``, or the value alone without an interval."""
    return f"{value:.3f}" + (f" {interval}" if interval is not None else "")


@dataclass(frozen=True)
class Versus:
    """The chosen run against the runner-up on ``metric`` (runner-up fields None without one;
    ``difference`` None when the two runs' predictions files could not be paired)."""

    metric: str
    value: float
    interval: Interval | None
    runner_up: str | None = None
    runner_value: float | None = None
    runner_interval: Interval | None = None
    difference: float | None = None
    difference_interval: Interval | None = None
    resampled: str = ""
    why_unpaired: str = ""

    @property
    def distinguishable(self) -> bool | None:
        """False when the difference's interval holds 0 (the choice is within the noise), None
        when there is no paired interval."""
        if self.difference_interval is None:
            return None
        return not self.difference_interval.holds(0.0)

    def lines(self) -> list[str]:
        """What promote prints about the choice, for a person."""
        out = [f"chosen: {self.metric} {with_interval(self.value, self.interval)} (95% interval)"]
        if self.interval is None:
            out[0] = f"chosen: {self.metric} {self.value:.3f} (no interval: logged for test metrics only)"
        if self.runner_up is None:
            return [*out, "runner-up: none (one run ranked)"]
        shown = with_interval(self.runner_value, self.runner_interval)
        out.append(f"runner-up: run {self.runner_up}, {self.metric} {shown}")
        if self.difference_interval is None:
            return [*out, f"difference: no paired interval ({self.why_unpaired})"]
        out.append(
            f"difference: {self.difference:+.3f} {self.difference_interval} (paired bootstrap over "
            f"the same {self.resampled} of one test set)"
        )
        if not self.distinguishable:
            out.append(
                "the interval of the difference holds 0: on this test set the chosen run is not "
                "distinguishable from the runner-up"
            )
        return out

    def tags(self) -> dict[str, str]:
        """The registered version's tags: the metric's interval, the difference and its interval."""
        tags = {}
        if self.interval is not None:
            tags |= {
                schema.METRIC_CI_LOW: f"{self.interval.low:.6g}",
                schema.METRIC_CI_HIGH: f"{self.interval.high:.6g}",
            }
        if self.runner_up is not None:
            tags[schema.RUNNER_UP_RUN_ID] = self.runner_up
        if self.difference_interval is not None:
            low, high = self.difference_interval
            tags |= {
                schema.RUNNER_UP_DIFFERENCE: f"{self.difference:.6g}",
                schema.RUNNER_UP_DIFFERENCE_CI: f"{low:.6g},{high:.6g}",
                schema.DISTINGUISHABLE_FROM_RUNNER_UP: str(self.distinguishable).lower(),
            }
        return tags


def paired(
    metric: str, first: Predictions | None, second: Predictions | None
) -> tuple[float, Interval, str] | str:
    """The paired difference of ``metric`` (``test_<name>``) between two runs' predictions of the
    same cells, matched by file: (difference, interval, resampled), or why there is none."""
    name = metric.removeprefix("test_")
    if not metric.startswith("test_") or name not in CI_METRICS:
        return f"{metric} has none; promote on one of: " + ", ".join(f"test_{m}" for m in CI_METRICS)
    if first is None or second is None:
        return "a run has no predictions file (trained before leukml logged them)"
    where = {file: i for i, file in enumerate(second.files)}
    if sorted(where) != sorted(first.files):
        return "the two runs' predictions are of different cells"
    order = np.array([where[f] for f in first.files])
    if not np.array_equal(second.labels[order], first.labels):
        return "the two runs' predictions files disagree on the cells' labels"
    return paired_difference(first.labels, first.p_all, second.p_all[order], first.subjects, name)
