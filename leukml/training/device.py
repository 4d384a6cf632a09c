"""The accelerator side of the fast path: what runs there as one compiled call, what travels there,
and how much fits.

Keras' ``predict_on_batch`` hands every batch's output back as a NumPy array, which waits for the
device and copies the result to the host. Extraction that feeds a head trained in the same process
needs neither: ``forward`` runs a frozen model as one compiled call whose output stays on the
device, ``to_device`` starts a batch's host-to-device copy (on the read-ahead thread, so it
overlaps the device's work on the previous batch), and ``extraction_batch`` sizes the batches from
the device's free memory. The backend's own module is imported only on that backend; where there is
none of this (torch; JAX without XLA) ``resident`` is False and callers keep the host path.
``compilation_cache`` keeps JAX's compiled programs on disk, so a later training with the same
shapes (the next trial, the next process) loads them instead of compiling again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import keras

from leukml.common.cachedir import cache_root
from leukml.model.keras_compat import kept_on

CPU_EXTRACTION_BATCH = 64  # no device memory to fill on a CPU: the batch that was always used there
MOST_EXTRACTION_BATCH = 1024
ACTIVATION_FACTOR = 4  # bytes per image ~ this many times the largest activation (inputs, outputs, scratch)
MEMORY_SHARE = 0.25  # of the device's free memory, for one extraction batch's activations
HOLD_SHARE = 0.8  # of the free device memory (available RAM on a CPU), for features held there
# programs that took at least this long to compile are kept (JAX's default, 1 s, keeps none of a
# head's on a CPU; its per-op programs of a few ms stay out)
MIN_COMPILE_S = 0.05


def resident(jit_compile: bool | str) -> bool:
    """Whether features can live on the device between compiled calls on this backend: TensorFlow,
    or JAX with XLA (``jit_compile`` not False)."""
    backend = keras.backend.backend()
    return backend == "tensorflow" or (backend == "jax" and jit_compile is not False)


def compilation_cache() -> None:
    """On JAX, keep compiled programs in ``<leukml cache>/xla`` (JAX's persistent compilation
    cache: keyed by the program, the jax version and the device), unless the user chose a folder
    (``JAX_COMPILATION_CACHE_DIR``); ``JAX_ENABLE_COMPILATION_CACHE=false`` turns it off. Call it
    before compiling: JAX reads the folder at its first cached compilation."""
    if keras.backend.backend() != "jax":
        return
    import jax  # this backend's own: only here

    try:
        if jax.config.jax_compilation_cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", str(cache_root() / "xla"))
            if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
                jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    except AttributeError:  # a JAX without these options: it compiles as it always did
        return


def to_device(x):
    """``x`` as a tensor of the backend's default device (the copy starts now)."""
    return keras.ops.convert_to_tensor(x)


def forward(model: keras.Model) -> Callable:
    """``model(x, training=False)`` as one compiled call whose output stays on the device: the
    computation ``predict_on_batch`` runs, without its wait and copy to the host. Made once per
    model and kept on it, so that a later extraction with the same model compiles nothing again."""

    def make() -> Callable:
        compilation_cache()
        return _forward(model)

    return kept_on(model, "_leukml_forward", make)  # not a tracked Keras attribute


def _forward(model: keras.Model) -> Callable:
    if keras.backend.backend() == "jax":
        import jax  # this backend's own: only here

        call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])

        def run(x):  # the variables' values as they are now (a Keras step may have replaced them)
            values = [
                [v.value for v in group]
                for group in (model.trainable_variables, model.non_trainable_variables)
            ]
            return call(*values, x)

        return run
    import tensorflow as tf  # this backend's own: only here

    return tf.function(lambda x: model(x, training=False), jit_compile=bool(model.jit_compile))


def _memory() -> tuple[int, int] | None:
    """(free, total) bytes of the accelerator, or None on a CPU (or where they cannot be read)."""
    try:
        if keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0]
            stats = device.memory_stats() if device.platform != "cpu" else None
            return (stats["bytes_limit"] - stats["bytes_in_use"], stats["bytes_limit"]) if stats else None
        import pynvml  # nvidia-ml-py: another backend on an NVIDIA GPU

        pynvml.nvmlInit()
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
            return int(info.free), int(info.total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no GPU, no driver, no nvidia-ml-py: a CPU as far as sizing goes
        return None


def free_memory() -> int | None:
    """Bytes free on the accelerator, or None on a CPU."""
    memory = _memory()
    return memory[0] if memory else None


def holds(nbytes: int) -> bool:
    """Whether ``nbytes`` more fit on the device: at most ``HOLD_SHARE`` of its free memory, or on
    a CPU (where the device is the host) of the host's available memory."""
    memory = _memory()
    if memory:
        return nbytes <= HOLD_SHARE * memory[0]
    try:
        import psutil

        return nbytes <= HOLD_SHARE * psutil.virtual_memory().available
    except Exception:
        return True


def keep_limit() -> int:
    """How many bytes of device copies a worker keeps for later trainings beside the current one's:
    half the accelerator's memory; on a CPU (where the device is the host) a quarter of its RAM."""
    memory = _memory()
    if memory:
        return memory[1] // 2
    try:
        import psutil

        return psutil.virtual_memory().total // 4
    except Exception:
        return 4 << 30


def _largest_activation(model: keras.Model) -> int:
    """Elements in the largest output of any layer of ``model``, nested models' layers included."""
    largest = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            largest = max(largest, _largest_activation(layer))
            continue
        shapes = layer.output.shape if hasattr(layer, "output") else ()
        largest = max(largest, math.prod(d for d in shapes[1:] if d))
    return largest


def extraction_batch(model: keras.Model, free: int | None = None) -> int:
    """The batch ``model`` extracts features in: 64 on a CPU; on an accelerator the largest power of
    two up to 1024 whose activations (about 4 times the largest layer output, 4 bytes each) take at
    most a quarter of the free device memory (``free``: measured when not given)."""
    free = free_memory() if free is None else free
    if free is None:
        return CPU_EXTRACTION_BATCH
    per_image = ACTIVATION_FACTOR * 4 * max(1, _largest_activation(model))
    fits = int(free * MEMORY_SHARE // per_image)
    if fits < 1:
        return 1
    return min(MOST_EXTRACTION_BATCH, 2 ** int(math.log2(fits)))
