"""The `leukml` command line: each command builds a config, calls the library, prints the result."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from leukml.splits import SPLIT_METHODS


def friendly_errors(fn):
    """Library errors become one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def split_options(fn):
    """The split options shared by `inspect` and `train`."""
    options = [
        click.option("--test-fraction", type=float, default=0.2, show_default=True,
                     help="Test share of all images (image/subject splits)."),
        click.option("--val-fraction", type=float, default=0.0, show_default=True,
                     help="Validation share of all images, carved from the training side."),
        click.option("--test-fold", type=int, default=None,
                     help="Fold held out with --split fold (default: the last fold)."),
        click.option("--seed", type=int, default=42, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


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
@friendly_errors
def synth(out: Path, n_all: int, n_hem: int, subjects: int, size: int, seed: int) -> None:
    """Write a synthetic C-NMC-like dataset to OUT (the real folder layout, BMP files)."""
    from leukml.synth import SynthConfig, write_synthetic

    config = SynthConfig(n_all=n_all, n_hem=n_hem, subjects=subjects, size=size, seed=seed)
    write_synthetic(out, config)
    k_all, k_hem = config.subject_counts()
    click.echo(f"wrote {n_all} all + {n_hem} hem images ({k_all} + {k_hem} subjects, {size}px) "
               f"to {out}")


@main.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--split", "split_method", type=click.Choice(SPLIT_METHODS), default=None,
              help="Also show the train/val/test split this would make.")
@split_options
@click.option("--strict", is_flag=True, help="Fail on any unreadable or truncated image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def inspect(data_dir: Path, split_method: str | None, test_fraction: float, val_fraction: float,
            test_fold: int | None, seed: int, strict: bool, as_json: bool) -> None:
    """Show what leukml sees in DATA_DIR: images, classes, subjects, skipped files, splits."""
    from leukml.inspection import describe, render_text
    from leukml.splits import SplitConfig

    split = None
    if split_method:
        split = SplitConfig(method=split_method, test_fraction=test_fraction,
                            val_fraction=val_fraction, test_fold=test_fold, seed=seed)
    report = describe(data_dir, split=split, strict=strict)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
