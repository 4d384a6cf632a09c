"""Where leukml keeps what it computes once: decoded images, scans, base features."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    """``$LEUKML_CACHE``, else ``~/.cache/leukml``."""
    env = os.environ.get("LEUKML_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leukml"


def cache_path(kind: str, name: str) -> Path:
    path = cache_root() / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def temp_sibling(path: Path) -> Path:
    """A fresh temp name next to ``path``; rename it onto ``path`` once complete, so an
    interrupted writer never leaves a file that later runs would trust."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = temp_sibling(path)
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def cached_array(
    path: Path, shape: tuple[int, ...], dtype: np.dtype | type, fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """The array stored at ``path``, memory-mapped read-only; built first by ``fill`` (which
    writes every row of a writable memmap) when missing, under a temp name renamed on success."""
    if not path.is_file():
        tmp = temp_sibling(path)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            fill(out)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r")


def cached_array_later(
    path: Path,
    shape: tuple[int, ...],
    dtype: np.dtype | type,
    fill: Callable[[np.ndarray], Sequence[Future]],
    finishing: Executor,
) -> tuple[np.ndarray, Future | None]:
    """``cached_array`` for a ``fill`` that returns while its writes go on (it returns their
    futures): the array at once (read-only; its rows are all written once the future is done) and
    a future on ``finishing`` that waits for the writes, then flushes the file and renames it into
    place. The future is None where the file was there already."""
    if path.is_file():
        return np.load(path, mmap_mode="r"), None
    tmp = temp_sibling(path)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        writes = fill(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    def finish() -> None:
        try:
            for write in writes:
                write.result()
            out.flush()
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    view = out.view()
    view.flags.writeable = False
    return view, finishing.submit(finish)
