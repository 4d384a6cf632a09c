"""The compiled epoch (leukml/compiled.py): whole head epochs on device-resident features give the
per-batch loop's model, on TensorFlow (in this process) and on JAX (a child process)."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from leukml.data.augment import VARIANTS
from leukml.model.archs import ModelConfig
from leukml.model.networks import Network, build_head
from leukml.training.compiled import CompiledEpoch
from leukml.training.config import TrainConfig
from leukml.training.sinks import NullSink
from leukml.training.sources import FeatureSource
from leukml.training.stage import binary_crossentropy, make_optimizer, train_epoch
from leukml.training.trainer import fit, prepare_data

# every per-step state the compiled epoch must carry as train_on_batch does: dropout's seed
# generator, class weights, the dihedral draws; 39 training images in batches of 8 end in a partial one.
# Validation and the milestones' test metrics (with their 8-variant TTA twins) come from the
# compiled forward pass on the device-resident features, or from predict_on_batch per batch.
RECIPE = {
    "dropout": 0.3,
    "class_weight": True,
    "augment": "dihedral",
    "tta": "dihedral",
    "epochs": 3,
    "eval_epochs": "2,3",
    "lr": 1e-3,
    "seed": 3,
}


def _values(model: keras.Model) -> list[np.ndarray]:
    """Every variable of ``model``, the dropout seed generator's state included."""
    return [np.array(v.numpy()) for v in model.variables]


def both_ways(data_dir: str) -> dict:
    """One head trained from one start twice, compiled epochs (the default) and
    ``compiled_epoch=False``: each way's curves, final variables and ``train_on_batch`` calls.
    Its features are random, 8 variants of each image: no base to build (slow on JAX's CPU)."""
    config = TrainConfig.of(data_dir=data_dir, weights="none", batch_size=8, dense_units=32, **RECIPE)
    prepared = prepare_data(config)
    rng = np.random.default_rng(0)
    n = len(prepared.dataset.labels)
    source = FeatureSource([rng.normal(size=(n, 2, 2, 16)).astype(np.float32) for _ in range(VARIANTS)])
    keras.utils.set_random_seed(config.seed)
    head = build_head((2, 2, 16), config.model)
    net = Network(model=head, base=head, extractor=head, head=head)  # the frozen stage trains the head only
    start = _values(head)
    calls, predictions = [], []
    per_batch, predict = head.train_on_batch, head.predict_on_batch
    head.train_on_batch = lambda *args, **kwargs: calls.append(1) or per_batch(*args, **kwargs)
    head.predict_on_batch = lambda *args, **kwargs: predictions.append(1) or predict(*args, **kwargs)
    out = {}
    for name, chosen in (("compiled", config), ("per_batch", config.replace(compiled_epoch=False))):
        for variable, value in zip(head.variables, start, strict=True):
            variable.assign(value)
        calls.clear(), predictions.clear()
        result = fit(net, prepared, chosen, NullSink(), source)
        out[name] = {
            "history": result.history,
            "milestones": {str(k): v for k, v in result.milestones.items()},
            "variables": [v.tolist() for v in _values(head)],
            "calls": len(calls),
            "predictions": len(predictions),
        }
    out["moved"] = float(max(np.abs(a - b).max() for a, b in zip(start, _values(head), strict=True)))
    return out


def _check(out: dict) -> None:
    compiled, per_batch = out["compiled"], out["per_batch"]
    assert compiled["calls"] == 0  # every batch ran in the compiled epochs
    assert per_batch["calls"] == 3 * 5  # the escape hatch: 4 full batches and the partial one per epoch
    assert compiled["predictions"] == 0  # validation and test passes ran on the device's features
    assert per_batch["predictions"] > 0
    assert compiled["milestones"].keys() == per_batch["milestones"].keys() == {"2", "3"}
    for epoch, scores in per_batch["milestones"].items():
        assert "test_accuracy_tta" in scores
        assert compiled["milestones"][epoch] == pytest.approx(scores, rel=1e-5, abs=1e-6, nan_ok=True)
    assert out["moved"] > 1e-3  # training moved the head
    assert compiled["history"].keys() == per_batch["history"].keys()
    for key, curve in per_batch["history"].items():
        np.testing.assert_allclose(compiled["history"][key], curve, rtol=1e-6, atol=1e-7, err_msg=key)
    for mine, theirs in zip(compiled["variables"], per_batch["variables"], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)


def test_compiled_epochs_equal_the_per_batch_loop_on_tensorflow(tiny_data):
    assert keras.backend.backend() == "tensorflow"
    _check(both_ways(str(tiny_data)))


@pytest.mark.slow
def test_compiled_epochs_equal_the_per_batch_loop_on_jax(tiny_data, child_env):
    proc = subprocess.run(
        [sys.executable, __file__, str(tiny_data)],
        env=child_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    _check(out)


CACHED_CHILD = """
import json, sys
import jax
from jax import monitoring
from leukml.training.config import TrainConfig
from leukml.training.trainer import train
events = {"hits": 0, "misses": 0}
def count(name, **kwargs):
    for kind in events:
        if name == f"/jax/compilation_cache/cache_{kind}":
            events[kind] += 1
monitoring.register_event_listener(count)
config = TrainConfig.of(data_dir=sys.argv[1], weights="none", image_size=32, batch_size=8, dense_units=16,
                        epochs=2, eval_epochs="2", tta="none")
train(config)
print(json.dumps({**events, "folder": jax.config.jax_compilation_cache_dir}))
"""


@pytest.mark.slow
def test_a_second_training_process_on_jax_loads_its_programs_from_the_cache(tiny_data, child_env, tmp_path):
    """The extraction, epoch and prediction programs that took a while to compile are kept in
    ``<LEUKML_CACHE>/xla``; the next process with the same shapes loads them instead of compiling."""

    def run(**env: str) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", CACHED_CHILD, str(tiny_data)],
            env=child_env(KERAS_BACKEND="jax", LEUKML_CACHE=str(tmp_path / "cache"), **env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    folder = tmp_path / "cache" / "xla"
    assert first["folder"] == second["folder"] == str(folder)
    assert first["hits"] == 0 and first["misses"] > 0
    assert any(folder.iterdir())
    assert second["hits"] > 0  # the same programs: not compiled again
    # the user's own settings are kept
    mine = run(
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"
    )
    assert mine["folder"] == str(tmp_path / "mine") and mine["hits"] == 0
    assert any((tmp_path / "mine").iterdir())


@pytest.mark.parametrize("batch_size", [8, 5, 32])  # no partial batch; 4 full and a partial; only a partial
def test_a_compiled_epoch_equals_train_epoch_at_any_batch_size(batch_size):
    rng = np.random.default_rng(batch_size)
    features = rng.normal(size=(24, 2, 2, 8)).astype(np.float32)
    labels, order = rng.integers(0, 2, 24), rng.permutation(24)
    head = build_head((2, 2, 8), ModelConfig(dense_units=16, dropout=0.2))
    head.compile(
        optimizer=make_optimizer(TrainConfig.of(lr=1e-2, decay_steps=2)),
        loss=binary_crossentropy,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    head.optimizer.build(head.trainable_variables)
    variables = [*head.variables, *head.optimizer.variables]
    start, weights = [np.array(v.numpy()) for v in variables], {0: 2.0, 1: 0.5}
    slow = train_epoch(head, features, labels, order, batch_size, weights)
    slow_values = _values(head)
    for variable, value in zip(variables, start, strict=True):
        variable.assign(value)
    program = CompiledEpoch.build(head, FeatureSource([features]), labels, weights, batch_size)
    fast = program.train(order)
    assert fast == pytest.approx(slow, rel=1e-6)
    for mine, theirs in zip(_values(head), slow_values, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)
    assert np.abs(slow_values[0] - start[0]).max() > 1e-4


if __name__ == "__main__":  # the JAX test's child: KERAS_BACKEND=jax python tests/test_compiled.py DATA_DIR
    print(json.dumps({"backend": keras.backend.backend(), **both_ways(sys.argv[1])}))
