"""The recipe beyond the paper's: augmentation, test-time augmentation, fine-tuning, early stopping,
the kept epoch, and a loop that continues from its state."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import click.testing
import keras
import numpy as np
import optuna
import pytest
from helpers import tiny_config, tiny_model

import leukml.training.stage
import leukml.training.trainer
from leukml.cli import main
from leukml.data.augment import dihedral
from leukml.experiments.config import SearchConfig
from leukml.experiments.search import selection_value
from leukml.experiments.space import suggest
from leukml.model.networks import build_network, unfreeze_top
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.features import feature_source
from leukml.training.sinks import NullSink
from leukml.training.sources import FeatureSource
from leukml.training.trainer import (
    LoopState,
    TrainResult,
    fit,
    optimizer_state,
    predict_tta,
    prepare_data,
    train,
)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"early_stopping": 3}, "early_stopping=3 watches the validation .* add --val-fraction"),
        ({"keep": "best"}, "keep=best picks the epoch on the validation .* add --val-fraction"),
        ({"epochs": 10, "fine_tune_layers": 2, "fine_tune_from": 11}, "after the last epoch; use 1..10"),
        ({"augment": "flips"}, "choose one of: none, dihedral, full"),
        ({"tta": "full"}, "choose one of: none, dihedral"),
        ({"keep": "first"}, "choose one of: last, best"),
        ({"fine_tune_lr": 0}, "fine_tune_lr=0; use a positive value"),
    ],
)
def test_a_recipe_that_cannot_work_is_refused_naming_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.of(**kwargs)


def test_the_recipe_options_are_flags_and_resolved_params():
    config = TrainConfig.of(epochs=10, fine_tune_layers=2, early_stopping=3, val_fraction=0.1, keep="best")
    assert (config.fine_tune_epoch, config.recipe.early_stopping) == (6, 3)  # the second half
    params = config.as_dict()
    assert (params["fine_tune_from"], params["augment"], params["keep"]) == (6, "none", "best")
    assert TrainConfig.of(epochs=10).fine_tune_epoch is None  # the paper: frozen throughout
    assert not TrainConfig.of(augment="full").uses_feature_cache  # full trains end to end
    out = click.testing.CliRunner().invoke(main, ["train", "--weights", "none", "--keep", "best"])
    assert out.exit_code != 0 and "add --val-fraction" in out.output, out.output


def test_predict_tta_averages_the_eight_dihedral_variants(tiny_data):
    net = build_network(tiny_model(), seed=1)
    images = np.asarray(prepare_data(tiny_config(tiny_data)).images[:5])
    each = [np.asarray(net.model.predict_on_batch(dihedral(images, v).astype(np.float32))) for v in range(8)]
    assert np.abs(each[1] - each[0]).max() > 1e-4  # the variants do give other probabilities
    averaged = predict_tta(net.model, images, batch_size=2)
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), atol=1e-6)
    # the mean over the whole group is the same for a turned and mirrored copy
    np.testing.assert_allclose(predict_tta(net.model, dihedral(images, 5), 2), averaged, atol=1e-6)


@pytest.mark.slow
def test_full_augmentation_trains_end_to_end_seeded(tiny_data, monkeypatch):
    def no_cached_features(*args, **kwargs):
        raise AssertionError("full augmentation must not train on cached features")

    monkeypatch.setattr(leukml.training.trainer, "feature_source", no_cached_features)
    config = tiny_config(tiny_data, epochs=1, lr=1e-3, seed=2, augment="full")
    first, again = train(config), train(config)
    plain = train(config.replace(augment="none", feature_cache=False))
    assert first.history == again.history
    for mine, theirs in zip(
        first.network.model.get_weights(), again.network.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)
    assert first.history["train_loss"] != plain.history["train_loss"]


def _layer_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def _changed(before: dict, after: dict) -> set[str]:
    return {
        name
        for name in before
        if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name], strict=True))
    }


@pytest.mark.slow
def test_fine_tuning_trains_the_top_layers_from_its_epoch_batchnorm_frozen(tiny_data):
    """Epoch 1 trains the head on the frozen base; from --fine-tune-from on, the base's top 2 layers
    with weights (BatchNormalization not counted, and never trained) train too."""
    config = tiny_config(
        tiny_data, arch="mobilenetv2", epochs=2, lr=1e-3, seed=3, fine_tune_layers=2, fine_tune_from=2,
        fine_tune_lr=1e-3,
    )  # fmt: skip
    prepared = prepare_data(config)
    net = build_network(config.model, seed=3)
    start, at = _layer_weights(net.base), {}
    result = fit(
        net,
        prepared,
        config,
        NullSink(),
        feature_source(net, prepared, config),
        on_epoch=lambda state, target: at.setdefault(state.epoch, _layer_weights(net.base)),
    )
    assert len(result.history["train_loss"]) == 2 and result.milestones.keys() == {2}
    assert _changed(start, at[1]) == set()
    assert _changed(start, at[2]) == {"Conv_1", "block_16_project"}  # with Conv_1_bn, block_16_project_BN
    assert unfreeze_top(net.base, 2) == ["Conv_1", "block_16_project"]
    with pytest.raises(ValueError, match="has 52 layers with weights .*use 0..52"):
        unfreeze_top(net.base, 53)


def test_fine_tuning_uses_its_own_learning_rate(tiny_data):
    """Stage 2's optimizer runs at --fine-tune-lr: at 1e-12 the model after epoch 2 is epoch 1's."""
    config = tiny_config(
        tiny_data, epochs=2, lr=1e-3, seed=4, fine_tune_layers=2, fine_tune_from=2, fine_tune_lr=1e-12
    )
    prepared = prepare_data(config)
    net = build_network(config.model, seed=4)
    at = {}
    fit(
        net,
        prepared,
        config,
        NullSink(),
        feature_source(net, prepared, config),
        on_epoch=lambda state, target: at.setdefault(state.epoch, net.model.get_weights()),
    )
    moved = max(np.abs(a - b).max() for a, b in zip(at[1], at[2], strict=True))
    assert moved < 1e-8


def test_fine_tuning_leaves_a_shared_base_frozen(tiny_data):
    config = tiny_config(tiny_data, epochs=2, lr=1e-3, seed=5, fine_tune_layers=2, fine_tune_from=2)
    bases = BaseCache()
    shared = bases.base(config)
    before = [np.array(w) for w in shared.get_weights()]
    result = train(config, bases=bases)
    assert result.network.base is not shared
    for kept, now in zip(before, shared.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)
    assert shared.trainable_weights == []


def test_early_stopping_and_keep_best_follow_the_validation_curve(tiny_data, monkeypatch):
    """Validation (accuracy, loss) per epoch is scripted; the rest of the training is real."""
    script = [(0.5, 0.7), (0.8, 0.6), (0.8, 0.5), (0.8, 0.5), (0.6, 0.4), (0.9, 0.1), (0.9, 0.1), (0.9, 0.1)]
    real_evaluate = leukml.training.stage.Stage.evaluate

    def scripted(stage, labels, idx, batch_size):
        _, probs = real_evaluate(stage, labels, idx, batch_size)
        accuracy, loss = script.pop(0)
        return {"accuracy": accuracy, "loss": loss}, probs

    monkeypatch.setattr(leukml.training.stage.Stage, "evaluate", scripted)
    config = tiny_config(
        tiny_data,
        epochs=8,
        eval_epochs=(4, 6),
        lr=1e-3,
        seed=6,
        val_fraction=0.2,
        early_stopping=2,
        keep="best",
    )
    prepared = prepare_data(config)
    net = build_network(config.model, seed=6)
    heads = {}
    result = fit(
        net,
        prepared,
        config,
        NullSink(),
        feature_source(net, prepared, config),
        on_epoch=lambda state, target: heads.setdefault(state.epoch, net.head.get_weights()),
    )
    # epoch 3 ties epoch 2's accuracy with a lower loss; epoch 4 ties epoch 3 entirely: 3 stays best
    assert (result.best_epoch, result.stopped_epoch, result.model_epoch) == (3, 5, 3)
    assert result.history["val_accuracy"] == [0.5, 0.8, 0.8, 0.8, 0.6]
    assert result.milestones.keys() == {4} and result.milestones_not_reached == (6, 8)
    for kept, best in zip(net.head.get_weights(), heads[3], strict=True):
        np.testing.assert_array_equal(kept, best)
    assert any(not np.array_equal(a, b) for a, b in zip(heads[3], heads[5], strict=True))
    assert selection_value(result, config) == 0.8  # a search selects the kept epoch


@pytest.mark.slow
def test_the_loop_continues_exactly_from_a_saved_state(tiny_data):
    """A run continued from its state after epoch 2 (in a fresh network given that epoch's weights
    and optimizer variables) ends as the run that went straight on: batch order, augmentation
    draws, the switch to fine-tuning, the best epoch and the schedule all continue."""
    config = tiny_config(
        tiny_data, epochs=4, lr=1e-3, seed=7, val_fraction=0.2, augment="dihedral", keep="best",
        fine_tune_layers=1, fine_tune_from=4, fine_tune_lr=1e-4,
    )  # fmt: skip
    prepared = prepare_data(config)
    net = build_network(config.model, seed=7)
    source = feature_source(net, prepared, config)
    saved = {}

    def save(state: LoopState, target: keras.Model) -> None:
        if state.epoch == 2:
            saved.update(state=copy.deepcopy(state), weights=net.model.get_weights())
            saved["state"].optimizer_variables = optimizer_state(target)

    straight = fit(net, prepared, config, NullSink(), source, on_epoch=save)
    fresh = build_network(config.model, seed=8)
    fresh.model.set_weights(saved["weights"])
    resumed = fit(fresh, prepared, config, NullSink(), FeatureSource(source.arrays), state=saved["state"])
    for k, values in straight.history.items():
        np.testing.assert_allclose(resumed.history[k], values, rtol=1e-6, err_msg=k)
    assert resumed.best_epoch == straight.best_epoch and resumed.milestones.keys() == {4}
    for mine, theirs in zip(fresh.model.get_weights(), net.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


def test_the_extended_search_samples_augmentation_and_fine_tune_depth():
    search = SearchConfig.of(mode="extended")
    trial = optuna.trial.FixedTrial(
        {
            "arch": "vgg16", "optimizer": "adam", "lr": 1e-4, "dense_units": 512, "dropout": 0.0,
            "pooling": "flatten", "batch_size": 32, "class_weight": False, "augment": "dihedral",
            "fine_tune_layers": 4,
        }
    )  # fmt: skip
    config = search.base.replace(**suggest(trial, search))
    assert (config.recipe.augment, config.recipe.fine_tune_layers) == ("dihedral", 4)
    grid = SearchConfig.of(mode="grid")
    assert suggest(optuna.trial.FixedTrial({"arch": "vgg16", "optimizer": "adam"}), grid).keys() == {
        "arch",
        "optimizer",
    }


def test_a_search_selects_on_the_epoch_the_run_keeps():
    split = SimpleNamespace(selection_on_test=False)
    result = TrainResult(None, SimpleNamespace(split=split), {"val_accuracy": [0.5, 0.9, 0.7]}, model_epoch=2)
    config = TrainConfig.of(epochs=5, val_fraction=0.1, early_stopping=1, keep="best")
    assert selection_value(result, config) == 0.9
