"""The commands that read what was trained: `leukml report`, `promote`, `predict` and `explain`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from leukml.analysis.comparison import PROTOCOL_CHOICES
from leukml.cli.options import STUDY_NAME_HELP, bool_flag, friendly_errors, reader_tracking_uri, report_out
from leukml.common.console import import_backend

READ_EXPERIMENT_HELP = (
    "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME or _ID, else the one experiment holding "
    "leukml training runs)."
)


@click.command()
@click.option("--experiment", default="", help=READ_EXPERIMENT_HELP)
@click.option("--parent-run", default="", help="Only the trials of this search's parent run.")
@click.option("--study-name", default="", help=STUDY_NAME_HELP)
@report_out("Folder for report.html, report.md and the figures.")
@reader_tracking_uri()
@friendly_errors
def report(experiment: str, parent_run: str, study_name: str, out: Path, tracking_uri: str) -> None:
    """Rebuild the paper's tables and Figure 9 from tracked runs, beside the paper's numbers."""
    from leukml.tracking.reports import tracked_report  # no backend: it reads runs and draws

    path, n = tracked_report(
        experiment or None, out, tracking_uri or None, parent_run or None, study_name or None
    )
    click.echo(f"wrote {path} and {out / 'report.html'} from {n} run(s)")


@click.command()
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
@click.option("--name", default="leukml-all-classifier", show_default=True, help="Registered model name.")
@click.option(
    "--alias",
    default="champion",
    show_default=True,
    help="Alias moved to the new version; the former one keeps 'previous'.",
)
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
@reader_tracking_uri()
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
    from leukml.serving import choice  # the choice and the aliases: no backend

    if rollback:
        now, before = choice.rollback(name, alias, tracking_uri or None)
        click.echo(f"{name}@{alias} -> version {now} (version {before} is now @previous)")
        return
    chosen = choice.choose(
        experiment,
        metric,
        None if arch == "any" else arch,
        name,
        parent_run or None,
        allow_test_selection,
        tracking_uri or None,
        study_name=study_name or None,
        tta=tta,
        protocol=protocol,
    )
    import_backend()  # the refusals above (no run, test selection, no model) came before its seconds
    from leukml.serving import registry

    done = registry.register(chosen, alias)
    verb = "registered" if done.created else "already registered as"
    click.echo(f"experiment {done.experiment}: {done.how}")
    for line in done.versus.lines() if done.versus else ():
        click.echo(line)
    click.echo(
        f"run {done.run_id} ({done.metric} {done.value:.4f}) {verb} {done.name} "
        f"version {done.version}; alias {alias} -> {done.version}"
    )
    from leukml.tracking.uri import serve_command

    click.echo(f"serve: {serve_command(name, alias, tracking_uri or None)}")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model-uri", default="", help="e.g. models:/leukml-all-classifier@champion")
@click.option("--url", default="", help="A running server, e.g. http://127.0.0.1:5001")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write file,label,p_all here instead (label 1 = ALL, 0 = hem; the C-NMC challenge's coding)",
)
@reader_tracking_uri()
@friendly_errors
def predict(
    images, model_uri: str, url: str, as_json: bool, csv_path: Path | None, tracking_uri: str
) -> None:
    """Classify IMAGE files (folders are searched recursively, in natural order: 2.bmp before 10.bmp)."""
    from leukml.serving import predict as lib

    if bool(model_uri) == bool(url):
        raise click.UsageError("give exactly one of --model-uri or --url")
    if as_json and csv_path:
        raise click.UsageError("give --json or --csv, not both")
    found = lib.collect_images(list(images))
    paths, names = [p for p, _ in found], [n for _, n in found]
    if csv_path:
        lib.check_csv(csv_path, names)  # before the model loads
    if url:
        table = lib.predict_with_server(url, paths)
    else:
        table = lib.predict_with_model(model_uri, paths, tracking_uri or None)
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


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-uri", required=True, help="e.g. models:/leukml-all-classifier@champion")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Image file to write."
)
@reader_tracking_uri()
@friendly_errors
def explain(image: Path, model_uri: str, out: Path, tracking_uri: str) -> None:
    """Write a Grad-CAM heatmap over the cell for the predicted class."""
    from PIL import Image

    from leukml.data.images import decode_image, read_image_file

    data = read_image_file(image)  # a bad image is named before the model loads
    from leukml.tracking.reader import fetch_model, load_keras_model

    local = fetch_model(model_uri, tracking_uri or None)  # so is a missing model
    import_backend()
    from leukml.model.gradcam import explain_image

    model = load_keras_model(local)
    picture, cls, p_all = explain_image(model, decode_image(data, int(model.input_shape[1])))
    original = Image.open(image).size
    Image.fromarray(picture).resize(original, Image.Resampling.BILINEAR).save(out)
    click.echo(f"{image}: {'ALL' if cls == 1 else 'hem'} (p_all {p_all:.4f}); Grad-CAM -> {out}")


COMMANDS = (report, promote, predict, explain)
