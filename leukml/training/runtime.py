"""What this process runs on: Keras backend, versions, device. Introspection only."""

from __future__ import annotations

from importlib import metadata

import keras


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_name() -> str:
    """``CPU``, or the first accelerator's name as the backend reports it."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return "CPU" if device.platform == "cpu" else str(device.device_kind)
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
    except Exception:  # introspection must never break a run
        return "unknown"
    return "CPU"


def _accelerator_has_bfloat16() -> bool:
    """A GPU of compute capability >= 8.0 (Ampere on), or a TPU: bfloat16 runs natively there."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "tpu":
            return True
        capability = getattr(device, "compute_capability", None)
        return device.platform == "gpu" and capability is not None and float(capability) >= 8.0
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
        return tuple(details.get("compute_capability") or (0, 0)) >= (8, 0)
    if backend == "torch":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def auto_precision() -> str:
    """``mixed_bfloat16`` where the accelerator computes bfloat16 natively (faster extraction
    and end-to-end steps on an H100, bench/RESULTS.md), else ``float32``: a CPU without bfloat16
    units (AVX2 only, like our CI machines) would only emulate it."""
    try:
        return "mixed_bfloat16" if _accelerator_has_bfloat16() else "float32"
    except Exception:  # introspection must never break a run
        return "float32"


def backend_requirements() -> list[str]:
    """Pinned pip requirements to load a saved Keras model on this backend."""
    backend = keras.backend.backend()
    packages = ["keras", "numpy"] + {
        "tensorflow": ["tensorflow"],
        "jax": ["jax", "jaxlib"],
        "torch": ["torch"],
    }.get(backend, [])
    return [f"{p}=={v}" for p in packages if (v := package_version(p))]
