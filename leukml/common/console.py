"""Keeping TensorFlow's native start-up lines off the console, so that a command's output (and a
failure's one line) is not buried under them."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

# TensorFlow >= 2.19 logs these through absl before its logging is set up, so TF_CPP_MIN_LOG_LEVEL
# cannot silence them (tensorflow/tensorflow#100442): absl INFO/WARNING lines in either format,
# absl's own notice, the duplicate CUDA plugin registrations, a CPU machine's failed cuInit,
# cpu_feature_guard's second line.
NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IW] \S+:\d+\]"
    r"|(?:E\d{4} [\d:.]+\s+\d+|\d{4}-\d\d-\d\d [\d:.]+: E) \S+:\d+\] "
    r"(?:Unable to register cu\w+ factory|failed call to cuInit)"
    r"|To enable the following instructions: )"
)


@contextlib.contextmanager
def native_stderr_filtered(noise: re.Pattern = NOISE):
    """Send file descriptor 2 to a temporary file meanwhile, then print back what is not noise.

    Native libraries write to the descriptor, not to ``sys.stderr``, hence the descriptor swap.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not noise.match(line)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def import_backend() -> None:
    """Import Keras and its backend (TensorFlow by default) without the backend's start-up lines."""
    if "keras" in sys.modules:
        return
    with native_stderr_filtered():
        import keras

        if keras.backend.backend() == "tensorflow":  # its CUDA start-up (cuInit) now, not later
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
    # TensorFlow warns about "tf.function retracing" when a process builds several models (a
    # search, the folds of a CV): expected there, and not the user's to fix
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
