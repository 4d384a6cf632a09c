"""One tracked training: a training of a configuration, or a FAILED or KILLED run continued from
its last checkpoint, inside a run of the tracker it is handed; and the seam through which observers
join every tracked training of the process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from leukml.data.splits import n_subjects, summarize
from leukml.tracking.tracker import Tracker
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.sinks import FanoutSink, MetricSink
from leukml.training.trainer import TrainResult, train

MakeObserver = Callable[[TrainConfig], MetricSink]
_observers: list[MakeObserver] = []


def observe_every_training(make: MakeObserver) -> Callable[[], None]:
    """From now on every tracked training of this process also sends its results to
    ``make(config)`` (called once per training, with the training's config), after its own sinks;
    returns what stops that.

    The seam for what watches trainings from outside leukml: the tests' gate holds a training at
    an epoch through it (``tests/gates.py``), however the commands call ``tracked_train``.
    """
    _observers.append(make)
    return lambda: _observers.remove(make)


def tracked_train(
    tracker: Tracker,
    config: TrainConfig | None = None,
    *,
    resume: str | None = None,
    tags: dict[str, str] | None = None,
    observer: MetricSink | None = None,
    bases: BaseCache | None = None,
) -> tuple[str, TrainResult]:
    """Train ``config`` with everything sent to ``tracker``, or (``resume``: a run id) continue
    that FAILED or KILLED run from its last checkpoint, in the same run, with its own options;
    returns (run id, result).

    ``observer`` also receives the results (a search's pruning reporter, the console);
    ``bases``: frozen bases shared with other trainings (a search worker's).
    """
    if (config is None) == (resume is None):
        raise TypeError("tracked_train: give a config to train, or the run id to resume, not both")
    with tracker.training(config, tags, resume) as run:
        joined = [make(run.config) for make in _observers]
        sink = FanoutSink(run.sink, observer, *joined)
        result = train(run.config, sink, bases, resume=run.checkpoint)
        tracker.finish(run, result, sink.progress)
    return run.run_id, result


@dataclasses.dataclass
class Trained:
    """One training of a plan (a CV fold, a protocol): its run, its result, what it stands for."""

    key: str  # the fold number or the protocol
    run_id: str
    result: TrainResult

    @property
    def sizes(self) -> str:
        """The training and test sides in cells and subjects: ``train 200 cells / 8 subjects, test
        40 / 4``, so that rows on different test sets say so."""
        split, records = self.result.prepared.split, self.result.prepared.dataset.records
        train, test = summarize(records, split.train), summarize(records, split.test)
        return (
            f"train {train['n_images']} cells / {n_subjects(train)} subjects, "
            f"test {test['n_images']} / {n_subjects(test)}"
        )
