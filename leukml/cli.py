"""The `leukml` command line: each command builds a config, calls the library, prints the result."""

from __future__ import annotations

import functools
import json
import os
import signal
import warnings
from pathlib import Path

import click

from leukml import options, signals
from leukml.comparison import PROTOCOL_CHOICES
from leukml.config import SearchConfig, TrainConfig
from leukml.console import import_backend
from leukml.errors import one_line
from leukml.options import Option, options_of
from leukml.protocols import HEADLINE, PROTOCOLS_SETS, SPLIT_OPTIONS, CvConfig
from leukml.splits import SPLIT_METHODS, SplitConfig
from leukml.tracking_uri import default_experiment

# Read once, when TensorFlow loads (the commands import it lazily, after this). 3, not 2: without a
# GPU, TensorFlow's CUDA build logs "failed call to cuInit" as an error on its first operation;
# real failures raise anyway. The lines TensorFlow logs while loading ignore it: see console.py.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Optuna calls the heartbeat options that searches rely on experimental, on every search
warnings.filterwarnings("ignore", message=r".*(is experimental \(supported from|is an experimental feature)")


# training options a search sets per trial itself (--archs, --optimizers): not options of `search`
SEARCHED = ("arch", "optimizer")
STUDY_NAME_HELP = "Every trial of this Optuna study, from each worker's search (not with --parent-run)."


class Stopped(click.ClickException):
    """Ctrl-C or SIGTERM: one line, and the shell's exit status for the signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def friendly_errors(fn):
    """Expected failures (bad input, missing model, unreachable server, Ctrl-C, SIGTERM) become one
    line and a non-zero exit; other exceptions are bugs and keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with signals.handled():
                return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise Stopped("interrupted", 128 + signal.SIGINT) from None
        except signals.Terminated as exc:
            raise Stopped("terminated (SIGTERM)", exc.code) from None
        except click.ClickException:
            raise
        except Exception as exc:
            message = one_line(exc, kwargs)
            if message is None:
                raise
            raise click.ClickException(message) from None

    return wrapper


def _optional(kind: type, what: str):
    """A click callback where empty means unset: MLproject parameters cannot be omitted, only
    left empty."""

    def convert(ctx, param, value):
        if value in (None, ""):
            return None
        try:
            return kind(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not {what}") from None

    return convert


def bool_flag(name: str, help: str):
    """``--name`` alone means true; ``--name false`` / ``--name true`` also work, so MLproject
    entry points can pass flags as parameters."""
    return click.option(
        name, type=click.BOOL, default=False, is_flag=False, flag_value=True, show_default=True, help=help
    )


def click_option(o: Option):
    """The click option of a config option (``leukml.options``): flag, type, default, choices, help."""
    help = o.help + (f" [default: {o.unset}]" if o.optional else "")
    if o.type is bool:
        return bool_flag(o.flag, help)
    if o.optional:
        what = {int: "a whole number", float: "a number"}.get(o.type, "a value")
        return click.option(o.flag, default="", callback=_optional(o.type, what), help=help)
    extra = {"is_flag": False, "flag_value": o.bare} if o.bare else {}
    if o.choices:  # listed in the help; the config refuses others, naming every choice
        extra["metavar"] = "[" + "|".join(o.choices) + "]"
    default = o.default if o.parse is None else str(o.default)
    return click.option(o.flag, type=o.type, default=default, show_default=True, help=help, **extra)


def config_options(config: type, skip: tuple[str, ...] = ()):
    """Every option of a config dataclass as click options, in declaration order."""

    def decorate(fn):
        for o in reversed([o for o in options_of(config) if o.name not in skip]):
            fn = click_option(o)(fn)
        return fn

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leukml")
def main() -> None:
    """leukml: train, compare, select and serve ALL-vs-normal cell classifiers."""


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-all", type=int, default=240, show_default=True, help="ALL (malignant) images.")
@click.option("--n-hem", type=int, default=120, show_default=True, help="Normal (hem) images.")
@click.option("--subjects", type=int, default=12, show_default=True, help="Subjects in total.")
@click.option("--size", type=int, default=128, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--prelim",
    type=int,
    default=0,
    show_default=True,
    help="Also write a labelled preliminary test set of this many cells (for --split official).",
)
@click.option(
    "--final", type=int, default=0, show_default=True, help="Also write an unlabelled final test set."
)
@click.option(
    "--test-subjects", type=int, default=4, show_default=True, help="Subjects of each test set (new ones)."
)
@friendly_errors
def synth(
    out: Path,
    n_all: int,
    n_hem: int,
    subjects: int,
    size: int,
    seed: int,
    prelim: int,
    final: int,
    test_subjects: int,
) -> None:
    """Write a synthetic C-NMC-like dataset to OUT (the real release's layout, BMP files)."""
    from leukml.synth import SynthConfig, write_synthetic

    sets = {"n_prelim": prelim, "n_final": final, "test_subjects": test_subjects}
    config = SynthConfig(n_all=n_all, n_hem=n_hem, subjects=subjects, size=size, seed=seed, **sets)
    write_synthetic(out, config)
    k_all, k_hem = config.subject_counts()
    click.echo(f"wrote {n_all} all + {n_hem} hem images ({k_all} + {k_hem} subjects, {size}px) to {out}")
    if prelim or final:
        click.echo(
            f"and the test sets: {prelim} labelled preliminary + {final} unlabelled final cells "
            f"({test_subjects} new subjects each)"
        )


@main.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--split",
    "split_method",
    type=click.Choice(SPLIT_METHODS),
    default=None,
    help="Also show the train/val/test split this would make.",
)
@config_options(SplitConfig, skip=("split",))
@click_option(next(o for o in options_of(TrainConfig) if o.name == "strict"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def inspect(data_dir: Path, split_method: str | None, strict: bool, as_json: bool, **split_options) -> None:
    """Show what leukml sees in DATA_DIR: images, classes, subjects, skipped files, splits."""
    from leukml.inspection import describe, render_text

    split = options.build(SplitConfig, {"split": split_method, **split_options}) if split_method else None
    report = describe(data_dir, split=split, strict=strict)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


def train_options(fn=None, skip: tuple[str, ...] = ()):
    """Every `leukml train` option (from ``TrainConfig``'s definitions) but ``skip``, with where to
    track it; `leukml search`, `cv` and `protocols` take them too (the latter two without the split
    options they set themselves)."""
    if fn is None:
        return functools.partial(train_options, skip=skip)
    fn = click.option("--no-jit", is_flag=True, help="Same as --jit false.")(fn)
    fn = click.option(
        "--tracking-uri",
        default="",
        callback=_not_under_mlflow_run("the tracking store ($MLFLOW_TRACKING_URI)"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
    )(fn)
    fn = click.option(
        "--experiment",
        default="",
        callback=_not_under_mlflow_run("the experiment (mlflow run --experiment-name)", default_experiment),
        help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else leukml).",
    )(fn)
    return config_options(TrainConfig, skip)(fn)


def _not_under_mlflow_run(what: str, default=None):
    """A click callback refusing an option that ``mlflow run`` decides (it made the run: the
    option would be ignored); an empty value becomes ``default()``."""

    def check(ctx, param, value):
        if value and os.environ.get("MLFLOW_RUN_ID"):
            raise click.BadParameter(
                f"mlflow run decides {what}: drop -P {param.name} and use mlflow run's own option"
            )
        return value or (default() if default else value)

    return check


def _train_options(jit: str, no_jit: bool, **values) -> dict:
    """The training's options by name, ``--no-jit`` folded into ``jit``."""
    if no_jit and jit == "true":
        raise ValueError("--jit true and --no-jit contradict each other; give one")
    return {**values, "jit": "false" if no_jit else jit}


def _check_resume_alone() -> None:
    """``--resume`` continues a run with the options it logged: any training option given beside it
    would be ignored, so it is refused; so is a run inside ``mlflow run``, which made a new run."""
    ctx = click.get_current_context()
    given = [
        p.opts[0]
        for p in ctx.command.params
        if p.name not in ("resume", "tracking_uri")
        and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"--resume continues the run with its own options; drop {', '.join(given)} "
            "(only --tracking-uri goes with it)"
        )
    if os.environ.get("MLFLOW_RUN_ID"):
        raise click.UsageError(
            "--resume continues an existing run: run `leukml train --resume` itself, not in mlflow run"
        )


def _console(epochs: int):
    """A training's progress on the console (epoch lines, the split's warning), unless
    ``$LEUKML_QUIET`` is set (tests, benchmarks, batch jobs)."""
    from leukml.sinks import ConsoleSink

    return None if os.environ.get("LEUKML_QUIET") else ConsoleSink(epochs)


@main.command()
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
    import_backend()
    from leukml.runs import tracked_resume, tracked_train

    if resume:
        # the run's own options; its epochs are known once the checkpoint is read
        run_id, result = tracked_resume(resume, tracking_uri or None, observer=_console(0))
    else:
        config = TrainConfig.of(**_train_options(**options))
        run_id, result = tracked_train(
            config, experiment=experiment, tracking_uri=tracking_uri or None, observer=_console(config.epochs)
        )
    click.echo(f"run {run_id} finished")
    click.echo(f"{'epoch':>5}  {'train_acc':>9}  {'test_acc':>8}  {'precision':>9}  {'recall':>6}  {'f1':>5}")
    for epoch, m in result.milestones.items():
        click.echo(
            f"{epoch:>5}  {result.history['train_accuracy'][epoch - 1]:>9.4f}  "
            f"{m['test_accuracy']:>8.4f}  {m['test_precision']:>9.4f}  "
            f"{m['test_recall']:>6.4f}  {m['test_f1']:>5.4f}"
        )
    from leukml.tracking import ui_link_of

    click.echo("\n".join(ui_link_of(run_id).lines("this run in the MLflow UI")))


@main.command()
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
    import_backend()
    from leukml.search import incomplete_cells

    own = {"mode": mode, "archs": archs, "optimizers": optimizers, "trials": trials, "storage": storage}
    own |= {"study_name": study_name, "pruner": pruner, "heartbeat": heartbeat}
    config = SearchConfig.of(base=_train_options(**options), **own)
    from leukml.runs import tracked_search

    parent, study = tracked_search(
        config, experiment=experiment, tracking_uri=tracking_uri or None, console=_console(config.base.epochs)
    )
    click.echo(f"study {study.study_name}: {len(study.trials)} trials; parent run {parent}")
    if any(t.state.name == "COMPLETE" for t in study.trials):
        click.echo(f"best {study.best_value:.4f} with {study.best_params}")
    from leukml.tracking import ui_link_of

    click.echo("\n".join(ui_link_of(parent, table=True).lines("the runs in the MLflow UI")))
    if mode == "grid" and (gaps := incomplete_cells(study, config)):
        raise click.ClickException(
            "grid incomplete, no COMPLETE trial for: " + ", ".join(f"{a}+{o}" for a, o in gaps)
        )


@main.command()
@config_options(CvConfig)
@train_options(skip=SPLIT_OPTIONS)
@friendly_errors
def cv(folds: str, experiment: str, tracking_uri: str, **options) -> None:
    """Cross-validate one training by subject: each fold a nested run, mean and std on the parent."""
    import_backend()
    config = CvConfig.of(base=_train_options(**options), folds=folds)
    from leukml.runs import tracked_cv

    parent, done, summary = tracked_cv(
        config, experiment=experiment, tracking_uri=tracking_uri or None, console=_console(config.base.epochs)
    )
    last = config.base.milestones[-1]
    click.echo(f"cv parent run {parent}: {len(done)} folds, test metrics at epoch {last}")
    click.echo(f"{'fold':>4}  {'run':<32}  " + "  ".join(f"{_short(m):>9}" for m in HEADLINE))
    for t in done:
        values = t.result.milestones.get(last, {})  # a fold stopped early has no last milestone
        click.echo(f"{t.key:>4}  {t.run_id:<32}  " + _values(values))
    for what in ("mean", "std"):
        row = {
            m: summary[f"cv_{what}_{m}"][last] for m in HEADLINE if last in summary.get(f"cv_{what}_{m}", {})
        }
        click.echo(f"{what:>4}  {'':<32}  " + _values(row))
    from leukml.tracking import ui_link_of

    click.echo("\n".join(ui_link_of(parent).lines("the cross-validation in the MLflow UI")))


@main.command()
@train_options(skip=PROTOCOLS_SETS)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True
)
@friendly_errors
def protocols(out: Path, experiment: str, tracking_uri: str, **options) -> None:
    """Train one configuration under the image, subject and official splits, then report the gap."""
    import_backend()
    config = TrainConfig.of(**_train_options(**options))
    from leukml.report import write_report
    from leukml.runreader import fetch_runs
    from leukml.runs import tracked_protocols
    from leukml.tracking import log_report_artifacts

    uri = tracking_uri or None
    parent, done = tracked_protocols(config, experiment, uri, console=_console(config.epochs))
    last = config.milestones[-1]
    click.echo(f"protocols parent run {parent}: test metrics at epoch {last}")
    click.echo(f"{'split':<9}  {'run':<32}  " + "  ".join(f"{_short(m):>9}" for m in HEADLINE))
    image = done[0].result.milestones.get(last, {})
    for t in done:
        values = t.result.milestones.get(last, {})  # a run stopped early has no last milestone
        gap = ""
        if t.key != "image" and "test_accuracy" in values and "test_accuracy" in image:
            gap = f"  ({values['test_accuracy'] - image['test_accuracy']:+.4f} accuracy vs image)"
        click.echo(f"{t.key:<9}  {t.run_id:<32}  " + _values(values) + gap)
        click.echo(f"{'':<9}  {t.sizes}")
    path = write_report(
        fetch_runs(experiment, parent, uri), out, f"protocols of {config.model.arch} + {config.optimizer}"
    )
    log_report_artifacts(parent, out, uri)
    click.echo(f"wrote {path} and {out / 'report.html'}")
    from leukml.tracking import ui_link_of

    click.echo("\n".join(ui_link_of(parent).lines("the comparison in the MLflow UI")))


def _values(metrics: dict[str, float]) -> str:
    """The headline metrics as table cells; ``–`` for one not there (a milestone not reached)."""
    return "  ".join(f"{metrics[m]:>9.4f}" if m in metrics else f"{'–':>9}" for m in HEADLINE)


def _short(metric: str) -> str:
    """``test_balanced_accuracy`` -> ``bal_acc``: a column heading."""
    return {
        "test_f1_weighted": "f1_w",
        "test_accuracy": "acc",
        "test_balanced_accuracy": "bal_acc",
        "test_sensitivity": "sens",
        "test_specificity": "spec",
    }.get(metric, metric)


READ_EXPERIMENT_HELP = (
    "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME or _ID, else the one experiment holding "
    "leukml training runs)."
)


@main.command()
@click.option("--experiment", default="", help=READ_EXPERIMENT_HELP)
@click.option("--parent-run", default="", help="Only the trials of this search's parent run.")
@click.option("--study-name", default="", help=STUDY_NAME_HELP)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True
)
@click.option("--tracking-uri", default="")
@friendly_errors
def report(experiment: str, parent_run: str, study_name: str, out: Path, tracking_uri: str) -> None:
    """Rebuild the paper's tables and Figure 9 from tracked runs, beside the paper's numbers."""
    import_backend()
    from leukml.report import write_report
    from leukml.runreader import experiment_name, fetch_runs, study_parent_ids
    from leukml.tracking import log_report_artifacts

    uri = tracking_uri or None
    experiment = experiment_name(experiment or None, uri)
    runs = fetch_runs(experiment, parent_run or None, uri, study_name or None)
    parents = [parent_run] if parent_run else []
    title = f"experiment {experiment}" + (f", search {parent_run}" if parent_run else "")
    if study_name:
        parents = study_parent_ids(experiment, study_name, uri)
        title += f", study {study_name} ({len(parents)} search run(s): {', '.join(parents)})"
    path = write_report(runs, out, title)
    for parent in parents:
        log_report_artifacts(parent, out, uri)
    click.echo(f"wrote {path} and {out / 'report.html'} from {len(runs)} run(s)")


@main.command()
@click.option("--experiment", default="", help=READ_EXPERIMENT_HELP)
@click.option("--parent-run", default="", help="Only the trials of this search.")
@click.option("--study-name", default="", help=STUDY_NAME_HELP)
@click.option(
    "--metric",
    default="test_accuracy",
    show_default=True,
    help="Selection metric (its value at the run's last milestone / epoch).",
)
@click.option("--arch", default="vgg16", show_default=True, help="Architecture; 'any' for all.")
@click.option("--name", default="leukml-all-classifier", show_default=True)
@click.option("--alias", default="champion", show_default=True)
@bool_flag("--allow-test-selection", "Promote although the run selected on the test split.")
@click.option(
    "--tta",
    default="none",
    show_default=True,
    metavar="[none|dihedral]",
    help="dihedral: the registered model averages each image's 8 turns and mirrors (one batched call).",
)
@click.option(
    "--protocol",
    default="auto",
    show_default=True,
    metavar="[" + "|".join(PROTOCOL_CHOICES) + "]",
    help="Rank only runs of this split protocol and one test set; auto: the most faithful present "
    "(official, subject, kfold, fold, image); mixed: every run, numbers on different test sets.",
)
@bool_flag("--rollback", "Point the alias back at the 'previous' version instead.")
@click.option("--tracking-uri", default="")
@friendly_errors
def promote(
    experiment,
    parent_run,
    study_name,
    metric,
    arch,
    name,
    alias,
    allow_test_selection,
    tta,
    protocol,
    rollback,
    tracking_uri,
) -> None:
    """Register the best run's model (as an image classifier) and move the alias to it."""
    import_backend()
    from leukml import registry

    if rollback:
        now, before = registry.rollback(name, alias, tracking_uri or None)
        click.echo(f"{name}@{alias} -> version {now} (version {before} is now @previous)")
        return
    done = registry.promote(
        experiment,
        metric,
        None if arch == "any" else arch,
        name,
        alias,
        parent_run or None,
        allow_test_selection,
        tracking_uri or None,
        study_name=study_name or None,
        tta=tta,
        protocol=protocol,
    )
    verb = "registered" if done.created else "already registered as"
    click.echo(f"experiment {done.experiment}: {done.how}")
    click.echo(
        f"run {done.run_id} ({done.metric} {done.value:.4f}) {verb} {done.name} "
        f"version {done.version}; alias {alias} -> {done.version}"
    )
    from leukml.tracking_uri import serve_command

    click.echo(f"serve: {serve_command(name, alias, tracking_uri or None)}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model-uri", default="", help="e.g. models:/leukml-all-classifier@champion")
@click.option("--url", default="", help="A running server, e.g. http://127.0.0.1:5001")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write file,label,p_all here instead (label 1 = ALL, 0 = hem; the C-NMC challenge's coding)",
)
@friendly_errors
def predict(images, model_uri: str, url: str, as_json: bool, csv_path: Path | None) -> None:
    """Classify IMAGE files (folders are searched recursively, in natural order: 2.bmp before 10.bmp)."""
    from leukml import predict as lib

    if bool(model_uri) == bool(url):
        raise click.UsageError("give exactly one of --model-uri or --url")
    if as_json and csv_path:
        raise click.UsageError("give --json or --csv, not both")
    found = lib.collect_images(list(images))
    paths, names = [p for p, _ in found], [n for _, n in found]
    if csv_path:
        lib.check_csv(csv_path, names)  # before the model loads
    table = lib.predict_with_server(url, paths) if url else lib.predict_with_model(model_uri, paths)
    if csv_path:
        lib.write_csv(csv_path, names, table)
        n_all = int((table["label"] == "ALL").sum())
        click.echo(f"wrote {len(table)} predictions ({n_all} ALL, {len(table) - n_all} hem) to {csv_path}")
        return
    for path, row in zip(paths, table.to_dict("records"), strict=True):
        if as_json:
            click.echo(json.dumps({"path": str(path), **row}))
        else:
            click.echo(f"{path}\t{row['label']}\t{row['p_all']:.4f}")


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-uri", required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@friendly_errors
def explain(image: Path, model_uri: str, out: Path) -> None:
    """Write a Grad-CAM heatmap over the cell for the predicted class."""
    from PIL import Image

    from leukml.images import decode_image, read_image_file

    data = read_image_file(image)  # a bad image is named before the model loads
    import_backend()
    from leukml.gradcam import explain_image
    from leukml.runreader import load_keras_model

    model = load_keras_model(model_uri)
    picture, cls, p_all = explain_image(model, decode_image(data, int(model.input_shape[1])))
    original = Image.open(image).size
    Image.fromarray(picture).resize(original, Image.Resampling.BILINEAR).save(out)
    click.echo(f"{image}: {'ALL' if cls == 1 else 'hem'} (p_all {p_all:.4f}); Grad-CAM -> {out}")
