"""`leukml synth` and `leukml inspect`: data to try leukml on, and what leukml sees in a folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from leukml.cli.options import click_option, config_options, friendly_errors
from leukml.common import options
from leukml.common.options import options_of
from leukml.data.splits import SPLIT_METHODS, SplitConfig
from leukml.training.config import TrainConfig


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-all", type=int, default=240, show_default=True, help="ALL (malignant) images.")
@click.option("--n-hem", type=int, default=120, show_default=True, help="Normal (hem) images.")
@click.option("--subjects", type=int, default=12, show_default=True, help="Subjects in total.")
@click.option("--size", type=int, default=128, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the generator.")
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
    from leukml.data.synth import SynthConfig, write_synthetic

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


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--split",
    "split_method",
    type=click.Choice(SPLIT_METHODS),
    default=None,
    help="Also show the train/val/test split this would make.",
)
@config_options(SplitConfig, skip=("split",))
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the split.")
@click_option(next(o for o in options_of(TrainConfig) if o.name == "strict"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def inspect(
    data_dir: Path, split_method: str | None, strict: bool, as_json: bool, seed: int, **split_options
) -> None:
    """Show what leukml sees in DATA_DIR: images, classes, subjects, skipped files, splits."""
    from leukml.data.inspection import describe, render_text

    values = {"split": split_method, "seed": seed, **split_options}
    split = options.build(SplitConfig, values) if split_method else None
    report = describe(data_dir, split=split, strict=strict)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


COMMANDS = (synth, inspect)
