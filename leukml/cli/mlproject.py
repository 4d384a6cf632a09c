"""The ``MLproject`` file, made from the CLI commands (themselves made from the options' definitions):
one entry point per command, one parameter per option, same names with ``_`` for ``-``.

``python -m leukml.cli.mlproject > MLproject`` writes it; a test checks that the committed file is what
this makes, so an option is defined once and reaches ``mlflow run`` without a second edit.
"""

from __future__ import annotations

import click

# entry point -> the `leukml` command it runs
ENTRY_POINTS = {
    "main": "train",
    "search": "search",
    "report": "report",
    "promote": "promote",
    "cv": "cv",
    "protocols": "protocols",
    "app": "app",
}
# not parameters: `mlflow run` starts a new run, and continuing one is `leukml train --resume`
NOT_IN_PROJECT = ("resume",)
# decided by `mlflow run` for the entry points that train (its --experiment-name and
# $MLFLOW_TRACKING_URI): as parameters they would be ignored, so they are none (and refused)
DECIDED_BY_MLFLOW_RUN = ("experiment", "tracking_uri")
TRAINING_ENTRY_POINTS = ("main", "search", "cv", "protocols")
HEADER = """\
name: leukml

# `mlflow run . -P arch=resnet50 -P optimizer=adam --env-manager local`
# Parameters are the `leukml <command>` options with `_` for `-`; empty strings mean "default".
# Made by `python -m leukml.cli.mlproject > MLproject` from the CLI: do not edit by hand.
conda_env: conda.yaml

entry_points:
"""


def _parameters(name: str, command: click.Command) -> list[click.Option]:
    """The options an entry point passes: every option but pure switches (``--no-jit``, ``--json``),
    which have a value-taking twin or no use in a project run, and those ``mlflow run`` decides."""
    skip = ("help", *NOT_IN_PROJECT, *(DECIDED_BY_MLFLOW_RUN if name in TRAINING_ENTRY_POINTS else ()))
    return [p for p in command.params if isinstance(p, click.Option) and not p.is_flag and p.name not in skip]


def _yaml_default(option: click.Option) -> tuple[str, str]:
    """(MLproject type, default as YAML) of an option."""
    value = option.default
    if option.multiple:  # one parameter, its values comma-separated
        return "string", '""'
    if isinstance(option.type, click.types.IntParamType | click.types.FloatParamType):
        return "float", repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, bool):
        return "string", f'"{str(value).lower()}"'
    text = "" if value is None else str(value)
    plain = text and text.replace("_", "").replace("-", "").replace(".", "").isalnum()
    return "string", text if plain else f'"{text}"'


def _quoted(option: click.Option) -> bool:
    """Free text (paths, URIs, lists, possibly empty) is quoted in the command; numbers, switches
    and choices are not."""
    numeric = isinstance(option.type, click.types.IntParamType | click.types.FloatParamType)
    choice = isinstance(option.type, click.Choice) or (option.metavar or "").startswith("[")
    return not (numeric or option.type is click.BOOL or choice)


def entry_point(name: str, command: click.Command) -> str:
    lines = [f"  {name}:", "    parameters:"]
    args = []
    for p in _parameters(name, command):
        kind, default = _yaml_default(p)
        lines.append(f"      {p.name}: {{type: {kind}, default: {default}}}")
        value = f"'{{{p.name}}}'" if _quoted(p) else f"{{{p.name}}}"
        args.append(f"{p.opts[0]} {value}")
    command_lines, line = [], f"leukml {ENTRY_POINTS[name]}"
    for arg in args:
        if len(line) + 1 + len(arg) > 96:
            command_lines.append(line)
            line = arg
        else:
            line += " " + arg
    command_lines.append(line)
    lines.append("    command: >-")
    lines += [f"      {text}" for text in command_lines]
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole MLproject file."""
    from leukml.cli import main

    points = [entry_point(name, main.commands[cmd]) for name, cmd in ENTRY_POINTS.items()]
    return HEADER + "\n".join(points)


if __name__ == "__main__":
    print(render(), end="")
