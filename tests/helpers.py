"""What the tests share, defined once: the installed ``leukml`` script run as a user runs it, a free
loopback port, and the tiny training (``weights=none``, 32 px, batch 8) that tests start from."""

from __future__ import annotations

import atexit
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a test of the command line alone loads no Keras
    from leukml.model.archs import ModelConfig
    from leukml.training.config import TrainConfig

# the console script pip installed beside this interpreter: what a user's shell runs
LEUKML = Path(sys.executable).parent / "leukml"

# the tiny training: random weights (nothing downloaded), 32 px cells, batches of 8
TINY = {"weights": "none", "image_size": 32, "batch_size": 8}
# the same as command-line options (a test adds its --epochs), and one epoch of it
TINY_ARGS = ("--weights", "none", "--image-size", "32", "--batch-size", "8")
TINY_TRAIN = [*TINY_ARGS, "--epochs", "1"]
# what TensorFlow and CUDA print at start-up, which a user should never see
TF_NOISE = re.compile(
    r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:|oneDNN custom operations|cuda drivers|"
    r"Unable to register cu|cpu_feature_guard|cuInit",
    re.MULTILINE,
)
# an epoch's line on the console of `leukml train`
EPOCH_LINE = re.compile(r"^epoch \d+/\d+  ")
# allowed beside the error: MLflow's own notices, and progress bars (a terminal clears those)
ALLOWED = re.compile(r"^\d{4}/\d\d/\d\d [\d:]+ INFO mlflow|^[\w ]+:\s+\d+%\|")


def tiny_config(data_dir: Path | str | None = None, **options) -> TrainConfig:
    """A ``TrainConfig`` of the tiny training on ``data_dir``; ``options`` override or add."""
    from leukml.training.config import TrainConfig

    given = {"data_dir": str(data_dir)} if data_dir is not None else {}
    return TrainConfig.of(**given, **(TINY | options))


def tiny_model(arch: str = "vgg16", image_size: int = 32, **options) -> ModelConfig:
    """A ``ModelConfig`` of an untrained network at ``image_size``."""
    from leukml.model.archs import ModelConfig

    return ModelConfig(arch=arch, weights="none", image_size=image_size, **options)


def run_leukml(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``leukml ARGS`` run to its end in ``cwd``; its output captured as text."""
    return subprocess.run(
        [str(LEUKML), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def leukml_popen(args: Sequence[str], env: dict[str, str], cwd: Path, **popen) -> subprocess.Popen:
    """``leukml ARGS`` started in ``cwd``, stdout and stderr in one text pipe."""
    return subprocess.Popen(
        [str(LEUKML), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


_TEMPLATE: list[Path] = []  # this test process's empty store, made on first use


def mlflow_store(folder: Path, name: str = "mlflow.db") -> str:
    """``sqlite:///FOLDER/NAME``, a new MLflow store as MLflow makes it (its tables and its Default
    experiment, whose artifacts go to ``FOLDER/mlruns``): a copy of one made once by this test
    process, since MLflow's schema migrations take a second of CPU a store."""
    import sqlite3

    path = Path(folder) / name
    assert not path.exists(), f"{path} exists: a test's store is new"
    if not _TEMPLATE:
        from mlflow.tracking import MlflowClient

        made = Path(tempfile.mkdtemp(prefix="leukml-store-")) / "mlflow.db"
        atexit.register(shutil.rmtree, made.parent, True)
        MlflowClient(f"sqlite:///{made}").search_experiments()  # tables made, migrations run
        _TEMPLATE.append(made)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE[0], path)
    db = sqlite3.connect(path)
    with db:  # where MLflow puts the Default experiment's artifacts: ./mlruns of the store's maker
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(path.parent / "mlruns" / "0"),),
        )
    db.close()
    return f"sqlite:///{path}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_line(stderr: str) -> str:
    """The failure's one line, after checking that only MLflow notices or progress bars come with it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert not TF_NOISE.search(stderr), stderr[-3000:]
    on_screen = (line.rsplit("\r", 1)[-1] for line in stderr.split("\n"))
    lines = [line for line in on_screen if line.strip() and not ALLOWED.match(line)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]
