"""Every command that reads or writes runs or models reaches any tracking server the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from leukml.cli import main

# the commands that touch no tracking store: they read and write image folders only
NO_STORE = {"synth", "inspect"}
TRACKING_URI = (
    "--tracking-uri TEXT MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
)


def test_every_run_reading_command_takes_the_same_tracking_uri(tmp_path, child_env):
    """`leukml COMMAND --help` of the installed script, for every command the CLI has."""
    leukml = Path(sys.executable).parent / "leukml"
    commands = sorted(main.commands)
    assert {"train", "search", "cv", "protocols", "report", "promote", "predict", "explain", "app"} <= set(
        commands
    )
    for command in commands:
        shown = subprocess.run(
            [str(leukml), command, "--help"], cwd=tmp_path, env=child_env(), capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        words = " ".join(shown.stdout.split())
        if command in NO_STORE:
            assert "--tracking-uri" not in words, command
        else:
            assert TRACKING_URI in words, f"leukml {command}: {words}"
