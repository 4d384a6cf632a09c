"""MkDocs hooks: the pages' generated parts, so that nothing in the docs is written twice.

A marker is a line of its own. ``<!-- options:COMMAND -->`` becomes the reference of a `leukml`
command (usage line and one row per option: flag, values, default, MLproject parameter, help), read
from the click command itself, so an option declared once on a config
(``leukml.common.options.option``) or by hand on a command appears with its help and default.
``<!-- options:COMMAND beyond=OTHER -->`` lists only the options COMMAND does not share with OTHER
(``leukml search`` beside ``leukml train``).

``<!-- commands -->`` becomes the reference of every `leukml` command, one section each, in the
order ``leukml --help`` lists them: a new command is documented the moment it exists.
``<!-- mlproject -->`` lists the MLproject's entry points and their parameters, ``<!-- environment
-->`` every ``LEUKML_*`` variable with its default read from the code, ``<!-- search-space -->`` the
extended search's ranges as ``suggest`` asks Optuna for them. ``<!-- run-schema:KIND:RUN -->``
lists the names of one KIND (``tag``, ``param``, ``artifact``) that one RUN (``training``,
``search``, ``cv``, ``protocols``, ``promotion``, ``version``) carries, from the run schema
(``leukml.common.runschema``), where each name is declared once with its meaning and its writer.

``<!-- include:PATH -->`` becomes the Markdown file PATH (relative to the repository root, e.g.
``bench/RESULTS.md``, which changes every benchmark session): its ``#`` title is dropped and its
sections go one level down, under the page's own heading.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import click
import yaml
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
# a marker is a line of its own, so that one quoted in running text or code stays as it is
OPTIONS = re.compile(r"^<!--\s*options:([\w-]+)(?:\s+beyond=([\w-]+))?\s*-->[ \t]*$", re.M)
INCLUDE = re.compile(r"^<!--\s*include:(\S+)\s*-->[ \t]*$", re.M)
GENERATED = re.compile(r"^<!--\s*(commands|mlproject|environment|search-space)\s*-->[ \t]*$", re.M)
RUN_SCHEMA = re.compile(r"^<!--\s*run-schema:(\w+):(\w+)\s*-->[ \t]*$", re.M)
# Every LEUKML_* variable leukml reads: (name, where its default is defined as "module:NAME" or the
# default in words, what it does). A test checks this against the variables the code reads.
ENVIRONMENT = (
    ("LEUKML_CACHE", "~/.cache/leukml", "Folder of the decoded-image, feature and scan caches."),
    (
        "LEUKML_QUIET",
        "unset",
        "Any value: no per-epoch progress lines on the console (tests, benchmarks, batch jobs).",
    ),
    (
        "LEUKML_METRIC_FLUSH_S",
        "leukml.tracking.sink:METRIC_FLUSH_S",
        "Seconds between a training's metric batches to MLflow; 0 sends every epoch's at once.",
    ),
    (
        "LEUKML_HEARTBEAT_S",
        "leukml.tracking.heartbeat:INTERVAL_S",
        "Seconds between a training run's heartbeats (the tag `heartbeat`), by which a run whose "
        "process is gone is told from one still training.",
    ),
    (
        "LEUKML_TERM_GRACE_S",
        "leukml.training.termination:TERM_GRACE_S",
        "Seconds a SIGTERM'd training may take to write its checkpoint before it exits; 0 exits at once.",
    ),
    (
        "LEUKML_MAX_IMAGE_BYTES",
        "leukml.data.images:MAX_REQUEST_IMAGE_BYTES",
        "Largest image file, in bytes, the served model and the page accept (the server's operator "
        "may lower it without registering the model again).",
    ),
    (
        "LEUKML_APP_TOKEN",
        "unset",
        "The token `leukml app` asks for; required when it binds an address other than loopback.",
    ),
)
DEFAULT_IN_HELP = re.compile(r"\s*\[default: (.*)\]\s*$")  # what click_option adds to an optional one
FENCE = re.compile(r"^\s*(```|~~~)")
TYPE_NAMES = {"integer": "integer", "float": "number", "path": "path", "directory": "folder", "file": "file"}


def _leukml_cli() -> tuple[click.Group, dict[str, str]]:
    """The `leukml` group and, per command, its MLproject entry point; the repository root goes on
    ``sys.path`` first, so that ``mkdocs build`` works from a checkout without installing it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from leukml.cli import main
    from leukml.cli.mlproject import ENTRY_POINTS

    return main, {command: entry for entry, command in ENTRY_POINTS.items()}


@functools.cache
def _project_parameters() -> dict[str, set[str]]:
    """Per command, the parameters of its MLproject entry point (as ``mlflow run`` sees them)."""
    from leukml.cli.mlproject import render

    _, entries = _leukml_cli()
    points = yaml.safe_load(render())["entry_points"]
    return {command: set(points[entry].get("parameters") or ()) for command, entry in entries.items()}


def command(name: str) -> click.Command:
    """The `leukml` command called ``name``.

    Raises:
        PluginError: no such command (the page names a command that does not exist).
    """
    main, _ = _leukml_cli()
    if name not in main.commands:
        raise PluginError(
            f"options:{name}: no such leukml command; choose one of: {', '.join(main.commands)}"
        )
    return main.commands[name]


def options(cmd: click.Command) -> list[click.Option]:
    """The options of a command, in the order ``--help`` lists them (``--help`` itself left out)."""
    return [p for p in cmd.params if isinstance(p, click.Option)]


def _cell(text: str) -> str:
    """Plain text fit for a Markdown table cell: no emphasis, HTML or column breaks made by accident."""
    text = " ".join(text.split())
    for char in "\\`*_[]":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def help_and_default(p: click.Option) -> tuple[str, str | None]:
    """(an option's help without the ``[default: ...]`` that click_option may add, that default or None)."""
    text = p.help or ""
    m = DEFAULT_IN_HELP.search(text)
    return (text[: m.start()], m.group(1)) if m else (text, None)


def _values(p: click.Option) -> str:
    if isinstance(p.type, click.Choice):
        return " \\| ".join(f"`{c}`" for c in p.type.choices)
    if p.metavar and p.metavar.startswith("["):
        return " \\| ".join(f"`{c}`" for c in p.metavar.strip("[]").split("|"))
    if p.is_flag:
        return "switch"
    if p.metavar:
        return f"`{p.metavar}`"
    if isinstance(p.type, click.types.BoolParamType):
        return "`true` \\| `false` (alone: `true`)"
    return TYPE_NAMES.get(p.type.name, "text")


def _default(p: click.Option, in_help: str | None) -> str:
    if p.required:
        return "required"
    if in_help is not None:
        return _cell(in_help)
    value = p.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`" if not p.is_flag else ("on" if value else "off")
    if value is None or value == "" or not isinstance(value, str | int | float | Path):
        return ""
    return f"`{value}`"


def options_table(name: str, beyond: str | None = None) -> str:
    """The Markdown reference of `leukml NAME`: its usage, then one table row per option (only
    those it does not share with `leukml BEYOND`, when given)."""
    cmd = command(name)
    rows = options(cmd)
    missing: list[str] = []
    if beyond is not None:
        other = options(command(beyond))
        shared = {(tuple(q.opts), q.help, repr(q.default)) for q in other}
        rows = [p for p in rows if (tuple(p.opts), p.help, repr(p.default)) not in shared]
        mine = {o for p in options(cmd) for o in p.opts}
        missing = [q.opts[0] for q in other if not set(q.opts) & mine]
    ctx = click.Context(cmd, info_name=name)
    usage = " ".join(["leukml", name, *cmd.collect_usage_pieces(ctx)])
    params = _project_parameters().get(name)
    head = ["option", "values", "default", *(["MLproject"] if params is not None else []), "help"]
    lines = [f"```text\n{usage}\n```", "", f"{(cmd.help or '').strip()}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in rows:
        text, in_help = help_and_default(p)
        flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        cells = [flags, _values(p), _default(p, in_help)]
        if params is not None:
            cells.append(f"`{p.name}`" if p.name in params else "—")
        lines.append("| " + " | ".join([*cells, _cell(text)]) + " |")
    if beyond is not None:
        names = [f"`{o}`" for o in missing]
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
        but = f" except {listed}" if names else ""
        lines += ["", f"It also takes every `leukml {beyond}` option{but}."]
    return "\n".join(lines) + "\n"


def included(path: str) -> str:
    """The Markdown file ``path`` (from the repository root), title dropped, sections one level down.

    Raises:
        PluginError: no such file.
    """
    file = ROOT / path
    if not file.is_file():
        raise PluginError(f"include:{path}: no such file under {ROOT}")
    out, fenced = [], False
    lines = file.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            line = "#" + line
        out.append(line)
    return "\n".join(out).strip() + "\n"


def commands_reference() -> str:
    """Every `leukml` command's reference, a section each."""
    main, _ = _leukml_cli()
    return "\n".join(f"## `leukml {name}`\n\n{options_table(name)}" for name in main.list_commands(None))


def mlproject_reference() -> str:
    """The MLproject's entry points: the command each runs and its parameters."""
    from leukml.cli.mlproject import ENTRY_POINTS

    lines = ["| entry point | runs | parameters |", "|---|---|---|"]
    for entry, name in ENTRY_POINTS.items():
        params = sorted(_project_parameters()[name])
        runs = f"[`leukml {name}`](#leukml-{name})"
        lines.append(f"| `{entry}` | {runs} | {', '.join(f'`{p}`' for p in params)} |")
    return "\n".join(lines) + "\n"


def environment_default(where: str) -> str:
    """A variable's default: the value of ``module:NAME`` in the code, else ``where`` as written."""
    if ":" not in where:
        return where
    import importlib

    _leukml_cli()  # the repository on sys.path
    module, name = where.split(":")
    return f"`{getattr(importlib.import_module(module), name)}`"


def environment_reference() -> str:
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    for name, where, text in ENVIRONMENT:
        lines.append(f"| `{name}` | {environment_default(where)} | {text} |")
    return "\n".join(lines) + "\n"


def _space_values(space) -> str:
    if isinstance(space, list):
        return " \\| ".join(f"`{str(c).lower() if isinstance(c, bool) else c}`" for c in space)
    low, high, log = space
    return f"`{low:g}` to `{high:g}`, " + ("log-uniform" if log else "uniform")


def search_space_reference() -> str:
    """The extended search's space (``leukml search --mode extended``), from ``suggest`` itself."""
    _leukml_cli()
    from leukml.experiments.config import SearchConfig
    from leukml.experiments.space import search_space

    lines = ["| parameter | values |", "|---|---|"]
    space = search_space(SearchConfig.of(mode="extended"))
    lines += [f"| `{name}` | {_space_values(values)} |" for name, values in space]
    return "\n".join(lines) + "\n"


def run_schema_reference(kind: str, run: str) -> str:
    """The names of one ``kind`` that one ``run`` carries, as the run schema declares them.

    Raises:
        PluginError: no such name in the schema (a misspelt marker).
    """
    _leukml_cli()
    from leukml.common.runschema import NAMES

    rows = [n for n in NAMES if n.kind == kind and n.run == run]
    if not rows:
        raise PluginError(f"run-schema:{kind}:{run}: the run schema declares no {kind} of a {run} run")
    lines = [f"| {kind} | what it says | written by |", "|---|---|---|"]
    for n in rows:
        shown = ", ".join(f"`{name}`" for name in n.shown.split(", "))
        by = n.by if "`" in n.by else ", ".join(f"`{w}`" for w in n.by.split(", "))
        lines.append(f"| {shown} | {n.what} | {by} |")
    return "\n".join(lines) + "\n"


def generated(name: str) -> str:
    return {
        "commands": commands_reference,
        "mlproject": mlproject_reference,
        "environment": environment_reference,
        "search-space": search_space_reference,
    }[name]()


def render(markdown: str) -> str:
    """A page's Markdown with every marker replaced."""
    markdown = GENERATED.sub(lambda m: generated(m.group(1)), markdown)
    markdown = RUN_SCHEMA.sub(lambda m: run_schema_reference(m.group(1), m.group(2)), markdown)
    markdown = OPTIONS.sub(lambda m: options_table(m.group(1), m.group(2)), markdown)
    return INCLUDE.sub(lambda m: included(m.group(1)), markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    """MkDocs event: generate a page's reference tables and included files."""
    return render(markdown)
