"""Checkpoints: what a training needs to continue exactly after a finished epoch. No MLflow here.

A checkpoint is a folder of two files: ``state.json`` (the epoch, the stage, the curves and
milestones so far, the best epoch, both generators' states) and ``arrays.npz`` (the variables of
the model that trains, its optimizer's variables, the kept best weights). As an epoch ends the loop
takes a ``Snapshot`` (host copies: the training goes on changing the originals); the tracking layer
writes it into a folder and stores that in the run while the next epochs train;
``train(..., resume=...)`` continues from a loaded one.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from leukml.common.errors import LeukmlError
from leukml.model.networks import Network
from leukml.training.loop import LoopState
from leukml.training.snapshot import ARRAYS_FILE, STATE_FILE, Snapshot
from leukml.training.stage import optimizer_state
from leukml.training.termination import Terminated, Watch

FORMAT = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the loop's state and the variables of the model that trained."""

    state: LoopState
    variables: list[np.ndarray]
    trained: str  # "head" (stage 1: the base is frozen) or "model" (stage 2: fine-tuning)

    @property
    def epoch(self) -> int:
        return self.state.epoch


def _trained(network: Network, stage: int) -> tuple[str, keras.Model]:
    """The model whose variables change in ``stage``: the head on the frozen base, or the whole
    model once fine-tuning has begun. Its ``variables`` include the dropout seed generator's state."""
    return ("head", network.head) if stage == 1 else ("model", network.model)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _rng(state: dict) -> np.random.Generator:
    bits = getattr(np.random, state["bit_generator"])()
    bits.state = state
    return np.random.Generator(bits)


def _number(value: float) -> float | None:
    return None if value is None or math.isinf(value) else value


def _copy(value) -> np.ndarray:
    """A host copy of a variable's value that nothing else shares (on JAX ``np.asarray`` can be a
    read-only view of a device buffer that a later step donates; TensorFlow's is a copy already)."""
    array = keras.ops.convert_to_numpy(value)
    return array if array.flags.owndata and array.flags.writeable else np.array(array)


def snapshot(state: LoopState, network: Network, target: keras.Model) -> Snapshot:
    """The checkpoint after ``state.epoch``; ``target``: the compiled model that trains (its
    optimizer's variables are saved)."""
    trained, model = _trained(network, state.stage)
    arrays = {f"var_{i}": _copy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"opt_{i}": a for i, a in enumerate(optimizer_state(target))}
    arrays |= {f"best_{i}": np.asarray(a) for i, a in enumerate(state.best_weights or [])}  # never mutated
    meta = {
        "format": FORMAT,
        "epoch": state.epoch,
        "stage": state.stage,
        "trained": trained,
        "history": state.history,
        "milestones": {str(e): m for e, m in state.milestones.items()},
        "best_epoch": state.best_epoch,
        "best_accuracy": _number(state.best_accuracy),
        "best_loss": _number(state.best_loss),
        "has_best_weights": state.best_weights is not None,
        "stopped_epoch": state.stopped_epoch,
        "order_rng": _rng_state(state.order_rng),
        "augment_rng": _rng_state(state.augment_rng),
    }
    return Snapshot(state.epoch, json.dumps(meta, allow_nan=True), arrays)


def load(folder: Path) -> Checkpoint:
    """Read a checkpoint folder written by ``Snapshot.write``.

    Raises:
        ValueError: the folder holds no checkpoint, or one of another format.
    """
    state_path, arrays_path = folder / STATE_FILE, folder / ARRAYS_FILE
    if not state_path.is_file() or not arrays_path.is_file():
        raise LeukmlError(f"{folder} holds no checkpoint ({STATE_FILE} and {ARRAYS_FILE})")
    meta = json.loads(state_path.read_text())
    if meta.get("format") != FORMAT:
        raise LeukmlError(f"checkpoint format {meta.get('format')} in {folder}; this leukml reads {FORMAT}")
    with np.load(arrays_path) as arrays:

        def series(prefix: str) -> list[np.ndarray]:
            return [arrays[f"{prefix}_{i}"] for i in range(sum(k.startswith(f"{prefix}_") for k in arrays))]

        variables, optimizer, best = series("var"), series("opt"), series("best")
    best_accuracy, best_loss = meta["best_accuracy"], meta["best_loss"]
    state = LoopState(
        order_rng=_rng(meta["order_rng"]),
        augment_rng=_rng(meta["augment_rng"]),
        epoch=meta["epoch"],
        stage=meta["stage"],
        history=meta["history"],
        milestones={int(e): m for e, m in meta["milestones"].items()},
        best_epoch=meta["best_epoch"],
        best_accuracy=-math.inf if best_accuracy is None else best_accuracy,
        best_loss=math.inf if best_loss is None else best_loss,
        best_weights=best if meta["has_best_weights"] else None,
        stopped_epoch=meta["stopped_epoch"],
        optimizer_variables=optimizer or None,
    )
    return Checkpoint(state, variables, meta["trained"])


def restore(network: Network, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's variables into the freshly built ``network``."""
    model = network.head if checkpoint.trained == "head" else network.model
    if len(model.variables) != len(checkpoint.variables):
        raise LeukmlError(
            f"the checkpoint holds {len(checkpoint.variables)} variables of the {checkpoint.trained} but "
            f"this network's has {len(model.variables)}: it was saved by another configuration"
        )
    for variable, value in zip(model.variables, checkpoint.variables, strict=True):
        variable.assign(value)


class Schedule:
    """When a training stores a checkpoint: after an epoch when at least ``minutes`` of training
    have passed since the last one (or since the training began), or when the epoch is a multiple
    of ``every``; whichever comes first, and either rule off at 0. Never after the last epoch or
    an early stop (the run is done). ``clock``: seconds, monotonic (a test's own)."""

    def __init__(
        self, every: int, minutes: float, epochs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every, self.seconds, self.epochs, self.clock = every, 60 * minutes, epochs, clock
        self._last = clock()

    @property
    def never(self) -> bool:
        return self.every <= 0 and self.seconds <= 0

    def due(self, state: LoopState) -> bool:
        if state.epoch >= self.epochs or state.stopped_epoch:
            return False
        by_epochs = self.every > 0 and state.epoch % self.every == 0
        return by_epochs or (self.seconds > 0 and self.clock() - self._last >= self.seconds)

    def taken(self) -> None:
        self._last = self.clock()


def callback(
    schedule: Schedule, store: Callable[[Snapshot], None], network: Network, watch: Watch | None = None
):
    """The loop's ``on_epoch`` callback that hands a ``Snapshot`` to ``store`` when ``schedule`` says
    so, and, when ``watch`` noted a SIGTERM, stores one of the epoch just ended and raises
    ``Terminated`` (``leukml.training.termination``)."""

    def on_epoch(state: LoopState, target: keras.Model) -> None:
        if watch is not None:
            watch.epoch_ended()
            if watch.requested:
                if state.epoch < schedule.epochs and not state.stopped_epoch:
                    store(snapshot(state, network, target))
                raise Terminated(128 + signal.SIGTERM)
        if schedule.due(state):
            store(snapshot(state, network, target))
            schedule.taken()

    return on_epoch
