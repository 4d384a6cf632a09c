"""One definition per option: the config field declares it, and the CLI flag, the MLproject
parameter and the logged params are made from that field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import click.testing
import pytest
import yaml

from leukml.cli import main
from leukml.cli.mlproject import render
from leukml.cli.options import config_options
from leukml.common import options
from leukml.common.options import env_seconds, option, options_of
from leukml.experiments.config import SearchConfig
from leukml.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_mlproject_file_is_made_from_the_cli():
    assert (ROOT / "MLproject").read_text() == render(), "run: python -m leukml.cli.mlproject > MLproject"


@pytest.mark.parametrize(
    "config, command, entry", [(TrainConfig, "train", "main"), (SearchConfig, "search", "search")]
)
def test_every_option_is_a_flag_a_parameter_and_a_field(config, command, entry):
    flags = {p.name: p for p in main.commands[command].params if isinstance(p, click.Option)}
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry]
    fields = {f.name for f in dataclasses.fields(config)}
    for o in options_of(config):
        flag = flags[o.name]
        assert flag.opts == [o.flag]
        assert flag.default == (o.default if o.parse is None or o.optional else str(o.default))
        if o.choices:
            assert flag.metavar == "[" + "|".join(o.choices) + "]"
        assert o.name in project["parameters"], o.name
        assert f"{o.flag} " in project["command"], o.name
        holder = fields if o.part is None else {f.name for f in dataclasses.fields(getattr(config(), o.part))}
        assert o.field in holder
    if config is TrainConfig:  # the flags' defaults build the default config
        defaults = {o.name: flags[o.name].default for o in options_of(config)}
        assert TrainConfig.of(**defaults) == TrainConfig()


def test_a_new_option_is_one_field_plus_its_use():
    """What adding an option takes: a field declared with ``option``; the flag, its parsing, the
    config value and the logged params follow from it."""

    @dataclasses.dataclass(frozen=True)
    class Toy:
        augment: str = option("none", "Augmentation.", choices=("none", "dihedral"))
        checkpoint_every: int = option(10)
        no_tta: bool = option(True, "No test-time augmentation.", cli="no_tta_flag", invert=True)

    (augment, every, tta) = options_of(Toy)
    assert (augment.flag, augment.choices, augment.default) == ("--augment", ("none", "dihedral"), "none")
    assert (every.flag, every.type, every.default) == ("--checkpoint-every", int, 10)
    assert (tta.flag, tta.default) == ("--no-tta-flag", False)
    toy = options.build(Toy, {"augment": "dihedral", "checkpoint_every": 5, "no_tta_flag": True})
    assert toy == Toy("dihedral", 5, False)
    assert options.flat_values(toy) == {"augment": "dihedral", "checkpoint_every": 5, "no_tta": False}

    @click.command()
    @config_options(Toy)
    def cmd(**values):
        click.echo(repr(options.build(Toy, values)))

    out = click.testing.CliRunner().invoke(cmd, ["--augment", "dihedral", "--no-tta-flag"]).output
    assert out.strip() == repr(Toy("dihedral", 10, False))


def test_parts_compose_and_replace_routes_to_them():
    config = TrainConfig.of(arch="resnet50", split="subject", seed=7, val_fraction="")
    assert config.model.arch == "resnet50" and config.split.method == "subject" and config.seed == 7
    assert config.split.val_fraction == 0.0  # left empty: the field's default
    changed = config.replace(arch="vgg16", lr=0.5, method="image")
    assert (changed.model.arch, changed.lr, changed.split.method, changed.seed) == ("vgg16", 0.5, "image", 7)
    with pytest.raises(TypeError, match="unknown field"):
        config.replace(archh="vgg16")
    with pytest.raises(TypeError, match="unknown option"):
        TrainConfig.of(archh="vgg16")


def test_an_extended_search_validates_by_default_also_from_the_library():
    assert SearchConfig.of(mode="extended").base.split.val_fraction == 0.1
    assert SearchConfig.of(mode="grid").base.split.val_fraction == 0.0
    assert SearchConfig.of(base={"val_fraction": 0.2}, mode="extended").base.split.val_fraction == 0.2


def test_params_keep_their_names():
    names = set(TrainConfig().as_dict())
    assert names == {
        "data_dir", "arch", "optimizer", "epochs", "eval_epochs", "lr", "batch_size", "decay_steps",
        "decay_rate", "image_size", "weights", "pooling", "dense_units", "dropout", "class_weight", "split",
        "test_fraction", "val_fraction", "seed", "pool", "strict", "feature_cache", "precision",
        "jit", "compiled_epoch", "augment", "tta", "fine_tune_layers", "fine_tune_from", "fine_tune_lr",
        "early_stopping", "keep", "calibrate", "system_metrics", "checkpoint_minutes", "checkpoint_every",
    }  # fmt: skip


@pytest.mark.parametrize(
    "split, logged",
    [
        ("image", {"test_fraction", "val_fraction", "seed", "pool"}),
        ("subject", {"test_fraction", "val_fraction", "seed", "pool"}),
        ("official", {"val_fraction", "seed"}),
        ("fold", {"test_fold", "val_fraction", "seed"}),
        ("kfold", {"folds", "test_fold", "val_fraction", "seed", "pool"}),
    ],
)
def test_a_run_logs_only_the_split_options_its_split_reads(split, logged):
    config = TrainConfig.of(split=split)
    split_options = {"test_fraction", "val_fraction", "test_fold", "folds", "seed", "pool"}
    assert set(config.as_dict()) & split_options == logged
    assert TrainConfig.from_params(config.as_dict()).as_dict() == config.as_dict()  # resume: the same run


@pytest.mark.parametrize(
    ("value", "zero", "expected"),
    [
        ("", None, 7.0),
        ("2.5", None, 2.5),
        ("0", "never", 0.0),
        ("0", None, None),
        ("-1", "never", None),
        ("inf", "never", None),
        ("nan", None, None),
        ("soon", None, None),
    ],
)
def test_seconds_from_the_environment_are_finite_and_named_when_refused(monkeypatch, value, zero, expected):
    monkeypatch.setenv("LEUKML_SOME_S", value)
    if expected is not None:
        assert env_seconds("LEUKML_SOME_S", 7.0, zero) == expected
        return
    bound = ">= 0 (0: never)" if zero else "> 0"
    with pytest.raises(ValueError) as refused:
        env_seconds("LEUKML_SOME_S", 7.0, zero)
    assert str(refused.value) == (
        f"LEUKML_SOME_S={value!r}; use a number of seconds {bound}, or unset it for the default 7"
    )
