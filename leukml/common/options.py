"""One definition per option: a config dataclass field declared with ``option(...)`` carries its
default, type, choices and help; the CLI flags and the MLproject parameters are made from (or
checked against) these fields, so a new option is one field plus its use.

A field's option name is its CLI flag with ``-`` for ``_`` (``image_size`` <-> ``--image-size``) and
its MLproject parameter; ``cli=`` renames it where the field's name reads better in code
(``SplitConfig.method`` is ``--split``), ``invert=True`` makes a ``--no-...`` flag of a boolean
that defaults to true, ``parse=`` turns the flag's text into the field's value.

The field also says what the rest of the code must know of it, so that the tables made from these
facts cannot forget a new option: whether it is ``bookkeeping`` (where or how a run was
computed, not what it trained: it does not tell configurations apart; any other option does),
whether it is one of the evaluation ``protocol``'s (the split's own options, and the seed that draws
it: runs that differ only in these are one configuration under several protocols), the split
methods that read it (``used_by``), that it acts only with fine-tuning (``fine_tuning``), and the
commands that set it per training themselves (``set_by``: a search per trial, ``cv`` per fold,
``protocols`` per protocol), which therefore do not take it as an option.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from leukml.common.errors import LeukmlError, OptionError

# the commands that set some training options per training themselves (``option(set_by=...)``)
PLANS = ("search", "cv", "protocols")


def option(
    default: Any,
    help: str = "",
    *,
    choices: tuple[str, ...] | None = None,
    cli: str | None = None,
    invert: bool = False,
    parse: Callable[[str], Any] | None = None,
    unset: str | None = None,
    bare: str | None = None,
    repeat: bool = False,
    bookkeeping: bool = False,
    protocol: bool = False,
    used_by: tuple[str, ...] | None = None,
    fine_tuning: bool = False,
    set_by: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that is also a command-line option (see the module docstring).

    ``unset``: the option may be left empty (MLproject parameters cannot be omitted), and the help
    says what empty means. ``bare``: the value of the flag given without a value (``--jit``).
    ``repeat``: the flag may be given several times; ``parse`` gets its values joined by commas
    (so one MLproject parameter can hold several, comma-separated). The facts the rest of the code
    reads (``bookkeeping``, ``protocol``, ``used_by``, ``fine_tuning``, ``set_by``): the module
    docstring. ``help`` describes the field itself, also for an inverted flag (the CLI words the
    ``--no-...`` flag's help from it).
    """
    unknown = set(set_by) - set(PLANS)
    if unknown:
        raise TypeError(f"set_by={set_by}: unknown {sorted(unknown)}; choose from: {', '.join(PLANS)}")
    meta = {
        "help": help,
        "choices": choices,
        "cli": cli,
        "invert": invert,
        "parse": parse,
        "unset": unset,
        "bare": bare,
        "repeat": repeat,
        "bookkeeping": bookkeeping,
        "protocol": protocol,
        "used_by": used_by,
        "fine_tuning": fine_tuning,
        "set_by": tuple(set_by),
    }
    if isinstance(default, list | dict | set):
        raise TypeError("mutable option defaults are not supported")
    return dataclasses.field(default=default, metadata={"leukml_option": meta})


def part(cls: type, protocol: bool = False) -> Any:
    """A dataclass field holding a config part whose options are options of the whole;
    ``protocol``: every option of the part is one of the evaluation protocol's (``option``)."""
    return dataclasses.field(default_factory=cls, metadata={"leukml_part": True, "protocol": protocol})


@dataclass(frozen=True)
class Option:
    """An option as the command line and MLproject see it."""

    name: str  # CLI flag without ``--``, with ``_``; the MLproject parameter
    field: str  # the config field it sets
    part: str | None  # the config part holding the field (``model``, ``split``), None for the config itself
    type: type  # bool, int, float or str: the flag's type
    default: Any  # the flag's default (``""`` for an option that may be unset)
    help: str
    choices: tuple[str, ...] | None
    invert: bool
    parse: Callable[[str], Any] | None
    unset: str | None  # what an empty value means, for an option that may be left empty
    bare: str | None
    repeat: bool = False  # the flag may be given several times
    bookkeeping: bool = False  # where or how the run was computed: does not tell configurations apart
    protocol: bool = False  # one of the evaluation protocol's (the split's, the seed drawing it)
    used_by: tuple[str, ...] | None = None  # the split methods that read it (None: not a split's)
    fine_tuning: bool = False  # acts only with fine-tuning (--fine-tune-layers > 0)
    set_by: tuple[str, ...] = ()  # the commands that set it per training themselves (``PLANS``)

    @property
    def optional(self) -> bool:
        return self.unset is not None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def param(self) -> str:
        """Its name as a logged param and in ``config.json``: the field's for an inverted flag
        (``feature_cache``, not ``no_feature_cache``), else the option's."""
        return self.field if self.invert else self.name

    def to_field(self, value: Any) -> Any:
        """The config field's value for the flag's value (not for an empty optional one)."""
        if self.repeat and isinstance(value, tuple | list):
            value = ",".join(value)
        if self.parse is not None:
            return self.parse(value)
        return not value if self.invert else value


def _flag_type(annotation: Any) -> type:
    """The scalar type of a field annotation (``int | None`` -> int, ``tuple[int, ...]`` -> str)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation if annotation in (bool, int, float, str) else str


def options_of(cls: type, part: str | None = None, protocol: bool = False) -> Iterator[Option]:
    """The options declared on a config dataclass, in field order; a field whose type is itself a
    config dataclass (a part) contributes its options in its place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("leukml_part"):
            yield from options_of(hints[f.name], f.name, protocol or f.metadata["protocol"])
            continue
        meta = f.metadata.get("leukml_option")
        if meta is None:
            continue
        kind = _flag_type(hints[f.name])
        optional = meta["unset"] is not None
        default = f.default
        if meta["parse"] is not None:
            default = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if meta["invert"]:
            default = not default
        if optional:
            default = ""  # left empty: the field's own default (or, for a search, its choice)
        yield Option(
            name=meta["cli"] or f.name,
            field=f.name,
            part=part,
            type=kind,
            default=default,
            help=meta["help"],
            choices=meta["choices"],
            invert=meta["invert"],
            parse=meta["parse"],
            unset=meta["unset"],
            bare=meta["bare"],
            repeat=meta["repeat"],
            bookkeeping=meta["bookkeeping"],
            protocol=protocol or meta["protocol"],
            used_by=meta["used_by"],
            fine_tuning=meta["fine_tuning"],
            set_by=meta["set_by"],
        )


def params_with(cls: type, fact: str) -> tuple[str, ...]:
    """The params (``Option.param``) of the options of ``cls`` whose ``fact`` is true (``bookkeeping``,
    ``protocol``, ``fine_tuning``), in field order."""
    return tuple(o.param for o in options_of(cls) if getattr(o, fact))


def set_by(cls: type, plan: str) -> tuple[str, ...]:
    """The options of ``cls`` that the command ``plan`` (one of ``PLANS``) sets per training itself:
    the ones it does not take as options."""
    if plan not in PLANS:
        raise TypeError(f"plan={plan!r}; choose one of: {', '.join(PLANS)}")
    return tuple(o.name for o in options_of(cls) if plan in o.set_by)


def build(cls: type, values: dict[str, Any]) -> Any:
    """An instance of config ``cls`` from option values by option name (missing ones take their
    default); parts are built from their own options.

    Raises:
        TypeError: a name that is not an option of ``cls``.
    """
    opts = {o.name: o for o in options_of(cls)}
    plain = {f.name for f in dataclasses.fields(cls) if not f.metadata}  # fields that are no option
    unknown = set(values) - set(opts) - plain
    if unknown:
        raise TypeError(f"unknown option(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    fields: dict[str | None, dict[str, Any]] = {None: {k: v for k, v in values.items() if k in plain}}
    for name, value in values.items():
        if name in plain:
            continue
        o = opts[name]
        if o.optional and value in (None, ""):
            continue  # left empty: the field's default
        if o.type is float and isinstance(value, float) and not math.isfinite(value):
            raise OptionError(
                f"{o.name}={value}: not a finite number; give a number"
                + (f" such as {o.default}" if o.default != "" else ""),
            )
        fields.setdefault(o.part, {})[o.field] = o.to_field(value)
    hints = typing.get_type_hints(cls)
    own = fields.pop(None, {})
    parts = {part: hints[part](**kwargs) for part, kwargs in fields.items()}
    return cls(**own, **parts)


def replace(config: Any, **values: Any) -> Any:
    """``config`` with some fields changed, by field name; fields of its parts are routed to them.

    Raises:
        TypeError: a name that is neither a field of ``config`` nor of one of its parts.
    """
    own = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {k: v for k, v in values.items() if k in own}
    per_part: dict[str, dict[str, Any]] = {}
    for o in options_of(type(config)):
        if o.part is not None and o.field in values:
            per_part.setdefault(o.part, {})[o.field] = values[o.field]
    for name, fields in per_part.items():  # at once: a part checks its fields together
        changes[name] = dataclasses.replace(changes.get(name, getattr(config, name)), **fields)
    routed = set(changes) | {o.field for o in options_of(type(config)) if o.part and o.field in values}
    unknown = set(values) - routed
    if unknown:
        raise TypeError(f"unknown field(s) for {type(config).__name__}: {', '.join(sorted(unknown))}")
    return dataclasses.replace(config, **changes)


def flat_values(config: Any) -> dict[str, Any]:
    """Every option's value by option name (by field name for an inverted flag: ``feature_cache``,
    not ``no_feature_cache``), flat, for MLflow params and ``config.json``."""
    out = {}
    for o in options_of(type(config)):
        holder = getattr(config, o.part) if o.part else config
        out[o.param] = getattr(holder, o.field)
    return out


def env_seconds(name: str, default: float, zero: str | None = None) -> float:
    """Seconds from the environment variable ``name``, else ``default``; ``zero``: what 0 means
    (None: 0 is refused too).

    Raises:
        ValueError: the variable is set but is not a finite number of seconds (> 0, or >= 0 with
            ``zero``); the message names it, the bound and the default.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds >= 0 if zero else seconds > 0) or math.isinf(seconds):
        bound = f">= 0 (0: {zero})" if zero else "> 0"
        raise LeukmlError(
            f"{name}={text!r}; use a number of seconds {bound}, or unset it for the default {default:g}"
        )
    return seconds
