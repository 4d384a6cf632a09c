"""The console: TensorFlow's native start-up lines kept off it, so that a command's output (and a
failure's one line) is not buried under them; long steps' progress (``Progress``), which the
library reports and only the console prints."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO

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


class Progress(Protocol):
    """How a long step says what it does: ``with progress("decoding 128 px", 360, "img") as
    advance: ... advance(n)``. The library takes one (default ``silent``) and never prints."""

    def __call__(
        self, what: str, total: int | None, unit: str
    ) -> contextlib.AbstractContextManager[Callable[[int], None]]: ...


@contextlib.contextmanager
def silent(what: str, total: int | None, unit: str) -> Iterator[Callable[[int], None]]:
    """A ``Progress`` that says nothing."""
    yield lambda n=1: None


class StepLines:
    """The console's ``Progress``: on a terminal a progress bar (tqdm); elsewhere (a log file, CI,
    ``mlflow run``) one line as a step starts and one as it ends, with its count and rate."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out

    @contextlib.contextmanager
    def __call__(self, what: str, total: int | None, unit: str) -> Iterator[Callable[[int], None]]:
        out = self.out or sys.stdout
        if out.isatty():
            from tqdm.auto import tqdm

            with tqdm(total=total, desc=what, unit=unit, file=out, mininterval=0.5) as bar:
                yield bar.update
            return
        print(f"{what}: {'' if total is None else f'{total} {unit}, '}started", file=out, flush=True)
        done, start = [0], time.perf_counter()

        def advance(n: int = 1) -> None:
            done[0] += n

        yield advance
        seconds = time.perf_counter() - start
        rate = f"{done[0] / seconds:.1f} {unit}/s" if seconds > 0 else "-"
        print(f"{what}: {done[0]} {unit} in {seconds:.1f} s ({rate})", file=out, flush=True)
