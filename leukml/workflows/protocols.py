"""The compared protocols, tracked: the same training under the image, subject and official splits
as nested runs of one parent, and the report of the gap between them."""

from __future__ import annotations

from pathlib import Path

from leukml.common import runschema as schema
from leukml.data.discovery import discover
from leukml.data.synth import embedded_dataset
from leukml.experiments.protocols import compared_protocols, protocol_lines
from leukml.tracking.tracker import Tracker
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.sinks import ConsoleSink
from leukml.workflows.train import Trained, tracked_train


def tracked_protocols(
    tracker: Tracker, config: TrainConfig, console: ConsoleSink | None = None
) -> tuple[str, list[Trained]]:
    """The same training under the image, subject and (when the data has the labelled preliminary
    test set) official splits, as nested runs (tag ``protocol``) of one parent; returns (parent id,
    the trainings in that order). Every protocol draws from one pool: with the official split
    there, the image and subject splits leave its preliminary test set out (``pool=training``), as
    the official split trains on ``training_data`` only."""
    dataset = discover(config.data_dir or embedded_dataset(), strict=config.strict)
    chosen = compared_protocols(any(r.listed for r in dataset.records))
    pool = "training" if "official" in chosen else "all"
    params = {
        "protocols": ",".join(chosen),
        "pool": pool,
        **{f"{schema.BASE_PREFIX}{k}": v for k, v in config.as_dict().items()},
    }
    bases, done = BaseCache(), []
    name = f"protocols-{config.model.arch}-{config.optimizer}"
    with tracker.plan(name, {schema.PROTOCOLS_PARENT: "true"}, params) as parent:
        for protocol in chosen:
            if console:
                console.say(f"protocol {protocol}")
            run_id, result = tracked_train(
                tracker,
                config.replace(method=protocol, pool=pool),
                tags={schema.PROTOCOL: protocol},
                observer=console,
                bases=bases,
            )
            done.append(Trained(protocol, run_id, result))
    return parent, done


def tracked_protocols_report(
    tracker: Tracker, config: TrainConfig, out: Path, console: ConsoleSink | None = None
) -> tuple[str, list[str], Path]:
    """`leukml protocols`: ``tracked_protocols``, then the report of its runs written to ``out`` and
    kept with the parent (``report/``); returns (parent id, the table as printed, the report)."""
    parent, done = tracked_protocols(tracker, config, console)
    last = config.milestones[-1]
    rows = [(t.key, t.run_id, t.result.milestones.get(last, {}), t.sizes) for t in done]  # stopped early: {}
    title = f"protocols of {config.model.arch} + {config.optimizer}"
    path = tracker.report(parent, out, title)
    return (
        parent,
        [f"protocols parent run {parent}: test metrics at epoch {last}", *protocol_lines(rows)],
        path,
    )
