"""What the scripts in bench/ share: their command line, a private work folder with its own leukml
cache, synthetic cells, child processes, timing, and the lines they print (the machine, tables, the
headline).

A script imports it as ``harness`` (Python puts the script's folder first on ``sys.path``). It
imports only the standard library: bench/gpu.py runs where there is no TensorFlow, MLflow or
Optuna, and a script sets its environment (``workdir``, ``quiet``) before it imports keras; what
needs leukml or keras imports it when called.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the variables of an MLflow run or experiment that ``mlflow.set_experiment`` and ``mlflow run``
# export: a child that inherited them would log into the parent's run
MLFLOW_RUN_VARS = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")

# the words of the options most scripts have, when a script names none of its own
HELP = {
    "images": "synthetic images",
    "size": "image side in pixels",
    "epochs": "epochs",
    "reps": "interleaved repetitions",
    "archs": "architectures",
    "optimizers": "optimizers",
}


class Parser(argparse.ArgumentParser):
    """A bench script's command line: its docstring as the help, ``--quick`` (a smoke run whose
    numbers mean nothing), and options whose default depends on ``--quick``, given as keywords
    ``name=(full, quick)`` or ``name=(full, quick, help)`` (``file_size`` is ``--file-size``; the
    help says both defaults). A value given on the command line wins, quick or not; an int option
    unless its defaults are strings (a comma-separated list)."""

    def __init__(self, doc: str, quick: str = "tiny smoke run", **scaled: tuple) -> None:
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.add_argument("--quick", action="store_true", help=quick)
        self.scaled: dict[str, tuple[Any, Any]] = {}
        for name, (full, small, *words) in scaled.items():
            words = words or [HELP[name]]
            self.add_argument(
                f"--{name.replace('_', '-')}",
                type=type(full),
                help=f"{words[0]} (default {full}; quick {small})",
            )
            self.scaled[name] = full, small

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        for name, (full, small) in self.scaled.items():
            setattr(parsed, name, getattr(parsed, name) or (small if parsed.quick else full))
        return parsed, rest


def quiet() -> None:
    """No progress lines from leukml, no TensorFlow start-up chatter (unless the caller chose)."""
    os.environ.setdefault("LEUKML_QUIET", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def workdir(name: str, cache: str = "cache") -> Path:
    """A new temp folder ``leukml-bench-NAME-*`` (the script removes it at the end), with leukml's
    cache in its ``cache`` folder from now on (``LEUKML_CACHE``, read at call time), and ``quiet``.
    Call it before importing keras."""
    work = Path(tempfile.mkdtemp(prefix=f"leukml-bench-{name}-"))
    os.environ["LEUKML_CACHE"] = str(work / cache)
    quiet()
    return work


def synthetic(root: Path, n: int, side: int, n_all: int | None = None, **config) -> Path:
    """``n`` synthetic C-NMC-like cells of ``side`` px written under ``root`` (``leukml.data.synth``):
    ``n_all`` of them ALL (default 68%, C-NMC's share, at least one), the rest hem; ``config``: the
    rest of ``SynthConfig`` (subjects, seed). Returns the dataset folder."""
    from leukml.data.synth import SynthConfig, write_synthetic

    n_all = max(1, round(n * 0.68)) if n_all is None else n_all
    return write_synthetic(root, SynthConfig(n_all=n_all, n_hem=n - n_all, size=side, **config))


def child_env(
    drop: tuple[str, ...] = MLFLOW_RUN_VARS, venv_path: bool = False, **extra: str
) -> dict[str, str]:
    """This process's environment for a child: less the variables whose names start with one of
    ``drop``, with this venv's bin folder first on ``PATH`` if ``venv_path`` (``mlflow models
    serve`` and ``leukml`` run ``python`` and ``uvicorn`` from there), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if venv_path:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_child(
    code: str, argv: Sequence[str], env: dict[str, str], failed: str, cwd: Path | None = None
) -> str:
    """The last line that ``python -c CODE ARGV...`` (this interpreter) printed; when it fails, exit
    with ``failed`` and the end of its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, cwd=cwd
    )
    if proc.returncode:
        raise SystemExit(f"{failed}:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def timed(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    """Wall seconds of ``fn(*args, **kwargs)``, and what it returned."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def interleaved(
    sides: Sequence[str], reps: int, run: Callable[[str], float], label: str = ""
) -> dict[str, list[float]]:
    """``reps`` rounds of ``run(side)`` (its seconds) for every side, in the order given in even
    rounds and reversed in odd ones, so that no side always goes first; prints each time as
    ``  LABELSIDE: S s``. Returns each side's seconds, round by round."""
    times: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(reps):
        for side in sides if i % 2 == 0 else sides[::-1]:
            times[side].append(run(side))
            print(f"  {label}{side}: {times[side][-1]:.2f} s", flush=True)
    return times


def compile_for_training(model, config) -> None:
    """Compile ``model`` (a keras.Model) as leukml's epoch loop trains it: ``config``'s optimizer,
    leukml's loss, an accuracy metric."""
    import keras

    from leukml.training.trainer import binary_crossentropy, make_optimizer

    model.compile(
        optimizer=make_optimizer(config),
        loss=binary_crossentropy,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def machine(backend: bool = True) -> str:
    """``device D, N CPUs[, backend B]``: what ran the numbers (imports keras)."""
    import keras

    from leukml.training.runtime import device_name

    return f"device {device_name()}, {os.cpu_count()} CPUs" + (
        f", backend {keras.backend.backend()}" if backend else ""
    )


def table(*columns: str) -> None:
    """A markdown table's header and rule."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def headline(text: str, name: str = "") -> None:
    """The last line, which tests/test_bench.py and bench/RESULTS.md read: ``[NAME ]headline: TEXT``."""
    print(f"{name} headline: {text}" if name else f"headline: {text}")


def stop_group(child: subprocess.Popen) -> None:
    """SIGTERM ``child``'s whole process group (a server and its workers); SIGKILL if it lingers."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    except ProcessLookupError:
        pass
