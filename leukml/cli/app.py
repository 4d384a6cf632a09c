"""The `leukml` command group: every command, and what the process sets before any runs."""

from __future__ import annotations

import os
import warnings

import click

from leukml.cli import data, page, results, training


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leukml")
def main() -> None:
    """leukml: train, compare, select and serve ALL-vs-normal cell classifiers."""
    # Read once, when TensorFlow loads (the commands import it lazily, after this). 3, not 2: without a
    # GPU, TensorFlow's CUDA build logs "failed call to cuInit" as an error on its first operation;
    # real failures raise anyway. The lines TensorFlow logs while loading ignore it: see console.py.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Optuna calls the heartbeat options that searches rely on experimental, on every search
    warnings.filterwarnings(
        "ignore", message=r".*(is experimental \(supported from|is an experimental feature)"
    )


for command in (*data.COMMANDS, *training.COMMANDS, *results.COMMANDS, *page.COMMANDS):
    main.add_command(command)
