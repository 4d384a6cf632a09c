"""A training run's heartbeat: proof that its process is alive, so that a run left RUNNING by a
process that is gone (SIGKILL, the out-of-memory killer, a full disk that would not take its end)
can be taken over by `leukml train --resume`, and a live one never is.

The run's ``heartbeat`` tag holds the time (Unix seconds) of its last beat, written when the run
starts and then every ``interval_s()`` seconds by a background thread: one write per interval.
A RUNNING run whose last beat is older than ``stale_after_s()`` (3 intervals) has lost its
process. Taking a run over is claimed through a param, which MLflow never lets two writers give
two values: of two resumes at once, exactly one goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.options import env_seconds

TAG = schema.HEARTBEAT
INTERVAL_S = 30.0  # $LEUKML_HEARTBEAT_S
STALE_BEATS = 3  # beats missed before a RUNNING run counts as lost


def interval_s() -> float:
    """Seconds between beats: ``$LEUKML_HEARTBEAT_S``, else ``INTERVAL_S``.

    Raises:
        ValueError: a value that is not a number > 0.
    """
    return env_seconds("LEUKML_HEARTBEAT_S", INTERVAL_S)


def stale_after_s() -> float:
    """A RUNNING run without a beat for this long has lost its process."""
    return STALE_BEATS * interval_s()


@contextlib.contextmanager
def beating(run_id: str) -> Iterator[None]:
    """Beat for ``run_id`` now and every ``interval_s()`` seconds until the block ends."""
    every, client, done = interval_s(), MlflowClient(), threading.Event()
    client.set_tag(run_id, TAG, f"{time.time():.3f}")

    def beat() -> None:
        while not done.wait(every):
            with contextlib.suppress(Exception):  # a missed beat is the store's error to report
                client.set_tag(run_id, TAG, f"{time.time():.3f}")

    thread = threading.Thread(target=beat, daemon=True, name=f"leukml-heartbeat-{run_id[:8]}")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def take_over(client: MlflowClient, run: Run) -> None:
    """Claim a RUNNING run whose process is gone and mark the lost attempt (its ``error`` tag;
    FAILED too when it saved no checkpoint, as nothing can continue it).

    Raises:
        ValueError: the run is alive (a recent beat), or another resume claimed it first.
    """
    run_id, last = run.info.run_id, run.data.tags.get(TAG)
    stale = stale_after_s()
    if last is None:
        raise LeukmlError(
            f"--resume {run_id}: the run is RUNNING and writes no heartbeat (a training from before "
            "leukml wrote heartbeats); if its process is gone, mark it FAILED with "
            f"`MLFLOW_TRACKING_URI={mlflow.get_tracking_uri()} python -m leukml.tracking.heartbeat {run_id}`"
        )
    age = time.time() - float(last)
    if age < stale:
        raise LeukmlError(
            f"--resume {run_id}: the run is RUNNING, its last heartbeat {age:.0f} s ago; a run whose "
            f"process is gone can be resumed {stale:g} s after its last beat ($LEUKML_HEARTBEAT_S x "
            f"{STALE_BEATS}): wait, or stop its process"
        )
    _claim_once(client, run_id, f"{schema.TAKEOVER_CLAIM}{last}")
    lost = f"process lost: no heartbeat for {age:.0f} s; taken over by `leukml train --resume`"
    client.set_tag(run_id, schema.ERROR, lost)
    if schema.CHECKPOINT_EPOCH not in run.data.tags:
        client.set_terminated(run_id, "FAILED")


def claim(client: MlflowClient, run: Run) -> None:
    """Claim a FAILED or KILLED run for one resume: a second resume of the same failure is refused.

    Raises:
        ValueError: another resume claimed it first.
    """
    _claim_once(client, run.info.run_id, f"{schema.RESUME_CLAIM}{run.info.end_time}")


def _claim_once(client: MlflowClient, run_id: str, key: str) -> None:
    mine = f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"
    # refused when the param is there already (another's value), or the write raced another's
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.log_param(run_id, key, mine)
    if client.get_run(run_id).data.params.get(key) != mine:
        raise LeukmlError(
            f"--resume {run_id}: another `leukml train --resume` took this run over first; "
            "only one process continues a run"
        )


def mark_failed(run_id: str) -> None:
    """Mark a RUNNING run FAILED by hand (its process is known to be gone)."""
    client = MlflowClient()
    client.set_tag(run_id, schema.ERROR, "marked FAILED by hand: its process is gone")
    client.set_terminated(run_id, "FAILED")


if __name__ == "__main__":
    import sys

    mark_failed(sys.argv[1])
    print(
        f"run {sys.argv[1]} marked FAILED on {mlflow.get_tracking_uri()}; "
        "`leukml train --resume` continues it"
    )
