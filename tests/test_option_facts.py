"""What the code must know of an option is said where the option is defined (``option(bookkeeping=,
protocol=, used_by=, fine_tuning=, set_by=)``), and every table of options is read from there: a new
option reaches the CLI, the MLproject, the report's configurations and the commands that set it
without a second edit."""

from __future__ import annotations

from dataclasses import dataclass

import click
import click.testing
import pytest

from leukml.analysis import comparison
from leukml.analysis.records import RunRecord
from leukml.cli import main
from leukml.cli.mlproject import entry_point
from leukml.cli.options import SEARCHED, click_option, config_options
from leukml.common import options
from leukml.common.options import option, options_of, part
from leukml.data.splits import SPLIT_METHODS, USED_OPTIONS, SplitConfig
from leukml.experiments.protocols import PROTOCOLS_SETS, SPLIT_OPTIONS
from leukml.training.config import TrainConfig, refuse_ignored


@dataclass(frozen=True)
class WiderSplit(SplitConfig):
    """The split with one more option, read by one split method and set per fold by `cv`."""

    shuffle_folds: bool = option(False, "Shuffle the kfold folds.", used_by=("kfold",), set_by=("cv",))


@dataclass(frozen=True)
class Wider(TrainConfig):
    """The training with new options of every kind: each is one field and nothing else."""

    split: WiderSplit = part(WiderSplit, protocol=True)
    head_layers: int = option(1, "Hidden layers of the head.")
    log_every: int = option(0, "Log the loss every N steps.", bookkeeping=True)
    warmup: int = option(0, "Epochs of fine-tuning at a rising rate.", fine_tuning=True)
    prompt: str = option("none", "A search's own choice.", set_by=("search",))


NEW = {"head_layers": "1", "log_every": "0", "warmup": "0", "prompt": "none", "shuffle_folds": "false"}


def _run(run_id: str, config: TrainConfig) -> RunRecord:
    params = {k: str(v) for k, v in config.as_dict().items()}
    return RunRecord(run_id, params, {}, {"test_accuracy": {config.epochs: 0.8}})


def test_a_new_option_is_a_flag_and_an_mlproject_parameter():
    @click.command()
    @config_options(Wider)
    def train(**values):
        click.echo(repr(options.build(Wider, values)))

    flags = {p.opts[0] for p in train.params}
    assert {"--head-layers", "--log-every", "--warmup", "--prompt", "--shuffle-folds"} <= flags
    project = entry_point("main", train)
    for name in NEW:
        assert f"      {name}: {{type: " in project, name
        assert f"--{name.replace('_', '-')} " in project, name
    out = click.testing.CliRunner().invoke(train, ["--head-layers", "3", "--split", "kfold"]).output
    assert out.strip() == repr(Wider.of(head_layers=3, split="kfold"))


def test_a_new_option_tells_configurations_apart_unless_declared_bookkeeping_or_the_protocols(monkeypatch):
    monkeypatch.setattr(comparison, "CONFIGURATION_PARAMS", comparison.configuration_params(Wider))
    base = Wider.of(epochs=2, split="kfold")
    same = [
        base.replace(log_every=5),  # bookkeeping
        base.replace(shuffle_folds=True),  # the split's
        base.replace(seed=7),  # draws the split
        base.replace(data_dir="elsewhere", strict=True, feature_cache=False),
    ]
    other = [base.replace(head_layers=2), base.replace(prompt="x"), base.replace(lr=0.5)]
    configuration = comparison.configuration(_run("base", base))
    assert dict(configuration)["head_layers"] == "1"
    for config in same:
        assert comparison.configuration(_run("same", config)) == configuration, config
    for config in other:
        assert comparison.configuration(_run("other", config)) != configuration, config


def test_a_new_option_joins_the_tables_made_from_the_definitions():
    assert options.params_with(Wider, "bookkeeping")[-1] == "log_every"
    assert "shuffle_folds" in options.params_with(Wider, "protocol")
    assert options.params_with(Wider, "fine_tuning") == ("fine_tune_from", "fine_tune_lr", "warmup")
    assert options.set_by(Wider, "search") == ("arch", "optimizer", "prompt")
    assert options.set_by(Wider, "cv") == ("split", "test_fold", "folds", "shuffle_folds")
    assert "shuffle_folds" not in options.set_by(Wider, "protocols")
    assert comparison.configuration_params(Wider) >= {"head_layers", "warmup", "prompt"}


def test_a_new_split_option_is_logged_and_accepted_only_where_its_split_reads_it():
    assert "shuffle_folds" in Wider.of(split="kfold").as_dict()
    assert "shuffle_folds" not in Wider.of(split="subject").as_dict()
    with pytest.raises(ValueError, match="shuffle_folds=True acts only with --split kfold"):
        refuse_ignored({"split": "subject", "shuffle_folds": True}, Wider)
    refuse_ignored({"split": "kfold", "shuffle_folds": True}, Wider)
    with pytest.raises(ValueError, match="warmup=2 acts only with fine-tuning"):
        refuse_ignored({"warmup": 2}, Wider)
    refuse_ignored({"warmup": 2, "fine_tune_layers": 2}, Wider)


def test_the_commands_that_set_an_option_themselves_do_not_take_it():
    flags = {
        name: {p.name for p in main.commands[name].params} for name in ("train", "search", "cv", "protocols")
    }
    every = {o.name for o in options_of(TrainConfig)}
    assert every <= flags["train"]
    assert every - flags["search"] == set(SEARCHED) == set(options.set_by(TrainConfig, "search"))
    assert set(SEARCHED) == {"arch", "optimizer"}
    assert set(SPLIT_OPTIONS) == set(options.set_by(TrainConfig, "cv")) == {"split", "test_fold", "folds"}
    assert every - flags["cv"] == set(SPLIT_OPTIONS) - {"folds"}  # cv's own --folds stands for it
    assert every - flags["protocols"] == set(PROTOCOLS_SETS) == set(options.set_by(TrainConfig, "protocols"))
    assert set(PROTOCOLS_SETS) == {"split", "test_fold", "folds", "pool"}


def test_a_search_sets_what_its_definition_says():
    from leukml.experiments.config import SearchConfig
    from leukml.experiments.space import searched_options

    assert set(searched_options(SearchConfig.of(mode="grid"))) == set(SEARCHED)
    assert set(SEARCHED) <= set(searched_options(SearchConfig.of(mode="extended")))


def test_split_options_name_split_methods_and_the_table_of_each_method_is_theirs():
    split_options = [o for o in options_of(SplitConfig) if o.name != "split"]
    assert all(o.used_by and set(o.used_by) <= set(SPLIT_METHODS) for o in split_options)
    for method in SPLIT_METHODS:
        assert set(USED_OPTIONS[method]) == {o.name for o in split_options if method in o.used_by}
    assert USED_OPTIONS["official"] == ("val_fraction",)
    with pytest.raises(TypeError, match="set_by"):
        option(0, "A count.", set_by=("train",))


def test_an_inverted_flag_says_it_turns_off_what_its_field_does():
    [o] = [o for o in options_of(TrainConfig) if o.name == "no_feature_cache"]
    assert o.help.startswith("Train the head on the frozen base's outputs")  # the field, not its flag
    help = click_option(o)(lambda **_: None).__click_params__[0].help
    assert help.startswith("Turn off feature_cache (on by default): train the head on the frozen base's")
