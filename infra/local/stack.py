"""Small helpers for up.sh, run with the venv's Python: free ports, health waits, MLflow users.

python stack.py ports N                      N free loopback ports p (p + 10000 free too)
python stack.py wait-http PID URL SECONDS    until URL answers 200 (fails at once if PID dies)
python stack.py wait-s3 PID ENDPOINT BUCKET SECONDS   until the bucket answers with $AWS_* keys
python stack.py add-user URL USER PASSWORD   create an MLflow user (admin creds in $MLFLOW_TRACKING_*)
python stack.py init-optuna URL              create Optuna's tables (before workers race to)
"""

from __future__ import annotations

import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports(n: int) -> list[int]:
    """Ports below 45000 whose +10000 neighbour is free too: SeaweedFS derives gRPC ports that way."""
    chosen: list[int] = []
    for port in random.sample(range(20000, 45000), 5000):
        if len(chosen) == n:
            break
        if (
            all(abs(port - c) > 1 and abs(port - c) != 10000 for c in chosen)
            and _free(port)
            and _free(port + 10000)
        ):
            chosen.append(port)
    if len(chosen) < n:
        sys.exit(f"stack.py: found only {len(chosen)} of {n} free ports on 127.0.0.1")
    return chosen


def _until(pid: int, what: str, seconds: float, check) -> None:
    deadline, last = time.monotonic() + seconds, "no answer yet"
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"stack.py: {what}: the process ({pid}) exited")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - anything means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    sys.exit(f"stack.py: {what} not healthy after {seconds:.0f} s ({last})")


def wait_http(pid: int, url: str, seconds: float) -> None:
    _until(pid, url, seconds, lambda: urllib.request.urlopen(url, timeout=5).status == 200)


def wait_s3(pid: int, endpoint: str, bucket: str, seconds: float) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    _until(
        pid, f"S3 bucket {bucket} at {endpoint}", seconds, lambda: client.head_bucket(Bucket=bucket) or True
    )


def add_user(url: str, user: str, password: str) -> None:
    """Idempotent: an existing user keeps its password."""
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    try:
        AuthServiceClient(url).create_user(user, password)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


if __name__ == "__main__":
    command, *args = sys.argv[1:] or ["help"]
    if command == "ports":
        print(" ".join(map(str, ports(int(args[0])))))
    elif command == "wait-http":
        wait_http(int(args[0]), args[1], float(args[2]))
    elif command == "wait-s3":
        wait_s3(int(args[0]), args[1], args[2], float(args[3]))
    elif command == "add-user":
        add_user(*args)
    elif command == "init-optuna":
        import optuna

        optuna.storages.RDBStorage(args[0])
    else:
        sys.exit(__doc__)
