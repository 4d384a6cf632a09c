"""--precision and --jit: tiny trainings on CPU, refusals, and the global policy left as found."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_config

from leukml.cli import main
from leukml.training import runtime
from leukml.training.config import TrainConfig
from leukml.training.trainer import train


def test_auto_resolves_by_device_and_is_logged_resolved():
    # mixed_bfloat16 where this process's accelerator computes bfloat16 natively, else float32
    expected = "mixed_bfloat16" if runtime._accelerator_has_bfloat16() else "float32"
    if runtime.device_name() == "CPU":
        assert expected == "float32"
    config = TrainConfig.of(weights="none")
    assert config.resolved_precision == expected
    assert config.as_dict()["precision"] == expected
    assert config.jit_compile == "auto"
    assert TrainConfig.of(jit="false").jit_compile is False


@pytest.mark.parametrize("bfloat16, expected", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_follows_the_accelerator(monkeypatch, bfloat16, expected):
    monkeypatch.setattr(runtime, "_accelerator_has_bfloat16", lambda: bfloat16)
    assert TrainConfig.of(weights="none").resolved_precision == expected
    assert TrainConfig.of(weights="none", precision="float32").resolved_precision == "float32"


def test_mixed_bfloat16_trains_and_restores_the_global_policy(tiny_data, leukml_cache):
    before = keras.config.dtype_policy().name
    result = train(tiny_config(tiny_data, epochs=1, precision="mixed_bfloat16"))
    assert keras.config.dtype_policy().name == before == "float32"
    assert result.network.base.dtype_policy.name == "mixed_bfloat16"
    assert result.network.model.output.dtype == "float32"  # the probs layer stays float32
    scores = result.milestones[1]
    assert 0.0 <= scores["test_accuracy"] <= 1.0 and np.isfinite(result.history["train_loss"][0])
    # float32 features are not reused for a bfloat16 base: it has its own cache file
    assert list((leukml_cache / "features").glob("*-32-mixed_bfloat16.npy"))


@pytest.mark.parametrize("jit", ["true", "false"])
def test_jit_on_and_off_train_on_cpu(tiny_data, jit):
    result = train(tiny_config(tiny_data, epochs=1, jit=jit))
    assert result.network.head.jit_compile is (jit == "true")
    assert np.isfinite(result.history["train_loss"][0])


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--precision", "fp8"],
            "--precision 'fp8'; choose one of: auto, float32, mixed_bfloat16, mixed_float16",
        ),
        (["--jit", "maybe"], "--jit 'maybe'; choose one of: auto, true, false"),
        (["--jit", "true", "--no-jit"], "contradict"),
    ],
)
def test_bad_precision_or_jit_is_refused(args, message):
    result = CliRunner().invoke(main, ["train", "--weights", "none", *args])
    assert result.exit_code != 0 and message in result.output, result.output
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig.of(precision="float16")


def test_mixed_float16_trains_with_loss_scaling_and_float32_outputs(tiny_data, leukml_cache):
    """float16 (no bfloat16 on the GPU, e.g. a T4 or V100) runs on the CPU too: float16 layers with
    float32 variables, a float32 softmax, and loss scaling so small float16 gradients do not vanish."""
    before = keras.config.dtype_policy().name
    result = train(tiny_config(tiny_data, epochs=1, precision="mixed_float16"))
    assert keras.config.dtype_policy().name == before == "float32"
    for model in (result.network.base, result.network.head):
        assert model.dtype_policy.name == "mixed_float16"
    dense = [layer for layer in result.network.head.layers if layer.weights and layer.name != "probs"]
    assert dense and all(layer.compute_dtype == "float16" for layer in dense)
    assert all(w.dtype == "float32" for layer in dense for w in layer.weights)
    assert result.network.model.output.dtype == "float32"  # the probs layer stays float32
    assert isinstance(result.network.head.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.all(np.isfinite(result.history["train_loss"])) and np.isfinite(result.history["val_loss"][-1])
    assert 0.0 <= result.milestones[1]["test_accuracy"] <= 1.0
    probs = np.asarray(result.network.model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # float16 features are not float32's: the base's output has its own cache file
    assert list((leukml_cache / "features").glob("*-32-mixed_float16.npy"))
