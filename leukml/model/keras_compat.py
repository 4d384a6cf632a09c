"""Keras' private or unsupported ways that leukml relies on, in one place, each failing loudly with
Keras' version when an upgrade takes it away (``tests/test_compat.py`` calls every one).

- ``Model._symbolic_build``: what ``train_on_batch`` does on its first call (compiled loss and
  metrics built), needed to trace a whole-epoch program before any step ran.
- An attribute kept on a model outside Keras' tracking (``object.__setattr__`` and the instance's
  ``__dict__``): a compiled forward function that must not become a tracked layer or variable.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


class KerasChanged(RuntimeError):
    """A private Keras API that leukml uses is gone or changed."""


def _changed(what: str, exc: Exception) -> KerasChanged:
    return KerasChanged(
        f"keras {keras.__version__}: {what} is gone or changed ({type(exc).__name__}: {exc}); "
        "leukml/model/keras_compat.py needs updating for this Keras"
    )


def symbolic_build(model: keras.Model, data_batch: tuple) -> None:
    """Build what ``model.train_on_batch`` builds on its first call, from one batch
    ``(x, y, sample_weight)``, without a step.

    Raises:
        KerasChanged: this Keras has no ``Model._symbolic_build(data_batch=...)``.
    """
    try:
        build = model._symbolic_build
    except AttributeError as exc:
        raise _changed("Model._symbolic_build", exc) from exc
    try:
        build(data_batch=data_batch)
    except TypeError as exc:  # another signature
        raise _changed("Model._symbolic_build(data_batch=...)", exc) from exc


def kept_on(model: keras.Model, name: str, make: Callable[[], object]) -> object:
    """The object kept on ``model`` under ``name``, made by ``make`` on the first call and stored
    outside Keras' attribute tracking (Keras would track a callable as a layer or its state)."""
    made = model.__dict__.get(name)
    if made is None:
        made = make()
        object.__setattr__(model, name, made)
    return made
