"""The commands that train: `leukml train`, `search`, `cv` and `protocols`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from leukml.cli.options import (
    SEARCHED,
    _check_resume_alone,
    _console,
    _train_options,
    config_options,
    friendly_errors,
    report_out,
    train_options,
)
from leukml.common.console import import_backend
from leukml.common.stores import check_sqlite
from leukml.experiments.config import SearchConfig
from leukml.experiments.protocols import PROTOCOLS_SETS, SPLIT_OPTIONS, CvConfig, cv_lines
from leukml.tracking.uri import reach_server, resolve_tracking_uri
from leukml.training.config import TrainConfig, refuse_ignored


@click.command()
@train_options
@click.option(
    "--resume",
    default="",
    metavar="RUN_ID",
    help="Continue this FAILED or KILLED run from its last checkpoint, in the same run, with its own "
    "options (give no training option).",
)
@friendly_errors
def train(experiment: str, tracking_uri: str, resume: str, **options) -> None:
    """Train one architecture x optimizer, tracked in MLflow."""
    if resume:
        _check_resume_alone()
    else:  # refused before the backend's seconds of import
        values = _train_options(**options)
        refuse_ignored(values)
        config = TrainConfig.of(**values)
    _check_store(tracking_uri, None if resume else experiment)
    if resume:  # so is a run that cannot continue
        from leukml.tracking.recovery import check_resumable

        check_resumable(resume, tracking_uri or None)
    import_backend()
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.train import tracked_train

    tracker = MlflowTracker(experiment, tracking_uri or None)
    if resume:
        # the run's own options; its epochs are known once the checkpoint is read
        run_id, result = tracked_train(tracker, resume=resume, observer=_console(0))
    else:
        run_id, result = tracked_train(tracker, config, observer=_console(config.epochs))
    click.echo(f"run {run_id} finished")
    click.echo(tracker.cost.line())
    click.echo(f"{'epoch':>5}  {'train_acc':>9}  {'test_acc':>8}  {'precision':>9}  {'recall':>6}  {'f1':>5}")
    for epoch, m in result.milestones.items():
        click.echo(
            f"{epoch:>5}  {result.history['train_accuracy'][epoch - 1]:>9.4f}  "
            f"{m['test_accuracy']:>8.4f}  {m['test_precision']:>9.4f}  "
            f"{m['test_recall']:>6.4f}  {m['test_f1']:>5.4f}"
        )
    from leukml.tracking.writer import ui_link_of

    click.echo("\n".join(ui_link_of(run_id).lines("this run in the MLflow UI")))


@click.command()
@config_options(SearchConfig)
@train_options(skip=SEARCHED)
@friendly_errors
def search(
    mode: str,
    archs: str,
    optimizers: str,
    trials: int,
    storage: str,
    study_name: str,
    pruner: str,
    heartbeat: int,
    experiment: str,
    tracking_uri: str,
    **options,
) -> None:
    """Run the paper's grid or a wider search; each trial is a nested MLflow run."""
    _check_store(tracking_uri, experiment)
    import_backend()
    from leukml.experiments.search import incomplete_cells

    own = {"mode": mode, "archs": archs, "optimizers": optimizers, "trials": trials, "storage": storage}
    own |= {"study_name": study_name, "pruner": pruner, "heartbeat": heartbeat}
    config = SearchConfig.of(base=_train_options(**options), **own)
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.search import tracked_search

    tracker = MlflowTracker(experiment, tracking_uri or None)
    parent, study = tracked_search(tracker, config, console=_console(config.base.epochs))
    click.echo(f"study {study.study_name}: {len(study.trials)} trials; parent run {parent}")
    if any(t.state.name == "COMPLETE" for t in study.trials):
        click.echo(f"best {study.best_value:.4f} with {study.best_params}")
    from leukml.tracking.writer import ui_link_of

    click.echo("\n".join(ui_link_of(parent, table=True).lines("the runs in the MLflow UI")))
    if mode == "grid" and (gaps := incomplete_cells(study, config)):
        raise click.ClickException(
            "grid incomplete, no COMPLETE trial for: "
            + ", ".join(f"{a}+{o}" for a, o in gaps)
            + f"; run the same search again (--study-name {study.study_name}) to train the interrupted "
            "ones (a failed one's error is on its trial run's `error` tag)"
        )


@click.command()
@config_options(CvConfig)
@train_options(skip=SPLIT_OPTIONS)
@friendly_errors
def cv(folds: str, experiment: str, tracking_uri: str, **options) -> None:
    """Cross-validate one training by subject: each fold a nested run, mean and std on the parent."""
    _check_store(tracking_uri, experiment)
    import_backend()
    config = CvConfig.of(base=_train_options(**options), folds=folds)
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.cv import tracked_cv

    tracker = MlflowTracker(experiment, tracking_uri or None)
    parent, done, summary = tracked_cv(tracker, config, console=_console(config.base.epochs))
    last = config.base.milestones[-1]
    click.echo(f"cv parent run {parent}: {len(done)} folds, test metrics at epoch {last}")
    folds = [(t.key, t.run_id, t.result.milestones.get(last, {})) for t in done]  # stopped early: {}
    click.echo("\n".join(cv_lines(folds, summary, last)))
    from leukml.tracking.writer import ui_link_of

    click.echo("\n".join(ui_link_of(parent).lines("the cross-validation in the MLflow UI")))


@click.command()
@train_options(skip=PROTOCOLS_SETS)
@report_out("Folder for the report of the runs (report.html, report.md, figures).")
@friendly_errors
def protocols(out: Path, experiment: str, tracking_uri: str, **options) -> None:
    """Train one configuration under the image, subject and official splits, then report the gap."""
    _check_store(tracking_uri, experiment)
    import_backend()
    config = TrainConfig.of(**_train_options(**options))
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.tracking.writer import ui_link_of
    from leukml.workflows.protocols import tracked_protocols_report

    tracker = MlflowTracker(experiment, tracking_uri or None)
    parent, lines, path = tracked_protocols_report(tracker, config, out, _console(config.epochs))
    click.echo("\n".join(lines))
    click.echo(f"wrote {path} and {out / 'report.html'}")
    click.echo("\n".join(ui_link_of(parent).lines("the comparison in the MLflow UI")))


def _check_store(tracking_uri: str, experiment: str | None = None) -> None:
    """A tracking store file that is not a database or is read-only, and a server that cannot be
    reached (asked for ``experiment``, reading only), refused before the backend's seconds of
    import (MLflow would say the same once the training starts)."""
    check_sqlite(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""), "--tracking-uri")
    if experiment is not None:
        reach_server(resolve_tracking_uri(tracking_uri or None), experiment)


COMMANDS = (train, search, cv, protocols)
