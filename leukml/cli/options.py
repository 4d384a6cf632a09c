"""What the commands share: options made from the config definitions, one-line errors, where a
training's progress goes."""

from __future__ import annotations

import functools
import logging
import os
import signal
from pathlib import Path

import click

from leukml.cli import signals
from leukml.cli.errors import REPORT_BUG, one_line
from leukml.common.errors import LeukmlError
from leukml.common.options import Option, options_of, set_by
from leukml.tracking.uri import default_experiment
from leukml.training.config import TrainConfig

# training options a search sets per trial itself (--archs, --optimizers; ``option(set_by=...)``):
# not options of `search`
SEARCHED = set_by(TrainConfig, "search")
STUDY_NAME_HELP = "Every trial of this Optuna study, from each worker's search (not with --parent-run)."


class Stopped(click.ClickException):
    """Ctrl-C or SIGTERM: one line, and the shell's exit status for the signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def friendly_errors(fn):
    """Expected failures (leukml's own errors, a missing model, an unreachable server, Ctrl-C,
    SIGTERM) become one line and a non-zero exit; other exceptions are bugs and keep their
    traceback, followed by a line asking to report them."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # MLflow logs a database error with its traceback before raising it: the one line says it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
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
                exc.add_note(REPORT_BUG)  # printed under the traceback
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
    """The click option of a config option (``leukml.common.options``): flag, type, default, choices,
    help (an inverted flag's from the help of the field it turns off)."""
    help = o.help + (f" [default: {o.unset}]" if o.optional else "")
    if o.invert:
        help = f"Turn off {o.param} (on by default): {help[:1].lower()}{help[1:]}"
    if o.type is bool:
        return bool_flag(o.flag, help)
    if o.optional:
        what = {int: "a whole number", float: "a number"}.get(o.type, "a value")
        return click.option(o.flag, default="", callback=_optional(o.type, what), help=help)
    if o.repeat:
        return click.option(o.flag, multiple=True, default=(), help=help + " Repeatable.")
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


TRACKING_URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."


def report_out(help: str):
    """``--out``: the folder a report is written to (`leukml report`, `leukml protocols`)."""
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("report"),
        show_default=True,
        help=help,
    )


def reader_tracking_uri():
    """``--tracking-uri`` of the commands that read runs (not refused under ``mlflow run``)."""
    return click.option("--tracking-uri", default="", help=TRACKING_URI_HELP)


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
        help=TRACKING_URI_HELP,
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
        raise LeukmlError("--jit true and --no-jit contradict each other; give one")
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
    from leukml.training.sinks import ConsoleSink

    return None if os.environ.get("LEUKML_QUIET") else ConsoleSink(epochs)
