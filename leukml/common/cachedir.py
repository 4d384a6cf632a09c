"""Where leukml keeps what it computes once: decoded images, scans, base features."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np

from leukml.common.errors import LeukmlError


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


class CacheFull(OSError, LeukmlError):
    """The cache folder's disk has no room for what leukml must write there."""

    def __str__(self) -> str:
        return str(self.strerror)


def _full(folder: Path, needed: int) -> CacheFull:
    try:
        free = f", {shutil.disk_usage(folder).free:,} free"
    except OSError:
        free = ""
    return CacheFull(
        errno.ENOSPC,
        f"no space left in the cache folder {folder}: {needed:,} bytes needed{free}; free space "
        "there or set LEUKML_CACHE to a folder on a disk with room",
    )


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_json_atomic(path: Path, obj: object) -> None:
    text = json.dumps(obj)
    try:
        tmp = temp_sibling(path)
    except OSError as exc:
        raise _full(path.parent, len(text)) if exc.errno in _NO_SPACE else exc from None
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise _full(path.parent, len(text)) if exc.errno in _NO_SPACE else exc from None
    finally:
        tmp.unlink(missing_ok=True)


def _open_reserved(path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> tuple[Path, np.memmap]:
    """A writable memmap of a new temp file beside ``path`` whose every block is allocated first:
    writing through a map into a sparse file on a full disk kills the process (SIGBUS) with
    nothing said; reserving turns that into ``CacheFull`` before any pixel is written.

    Raises:
        CacheFull: the disk cannot hold the array (no temp file is left behind).
    """
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        tmp = temp_sibling(path)
    except OSError as exc:
        raise _full(path.parent, needed) if exc.errno in _NO_SPACE else exc from None
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise
            # EOPNOTSUPP/EINVAL: this file system cannot reserve; write through the map as before
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _full(path.parent, needed) if exc.errno in _NO_SPACE else exc from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, out


def cached_array(
    path: Path, shape: tuple[int, ...], dtype: np.dtype | type, fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """The array stored at ``path``, memory-mapped read-only; built first by ``fill`` (which
    writes every row of a writable memmap) when missing, under a temp name renamed on success."""
    if not path.is_file():
        tmp, out = _open_reserved(path, dtype, shape)
        try:
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
    tmp, out = _open_reserved(path, dtype, shape)
    try:
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
