"""Content digests of data files, with a stat memo so that unchanged files are not read again.

A dataset is identified by its bytes: every cache (scan verdicts, decoded images, base features) is
keyed by a fingerprint built from these digests. Hashing 10,661 C-NMC BMPs (6.5 GB) costs seconds;
the memo makes later runs cost a ``stat`` per file. As git's index does, a memo entry is trusted only
while the file's (size, mtime_ns, ctime_ns, inode, device) are unchanged, and only for a file whose
last change was more than ``RACY_S`` before it was looked at: a file rewritten within the same
timestamp tick (coarse on some file systems: 2 s on FAT) could otherwise keep its stat and hide new
bytes. The ctime moves on every change and no user can set it, so a tool that restores the mtime
cannot hide a change either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from leukml.common.cachedir import cache_path, write_json_atomic
from leukml.common.console import Progress, silent
from leukml.common.errors import LeukmlError

DIGEST_CHARS = 32  # 128 bits of SHA-256
RACY_S = 2.0  # files modified this recently are re-hashed next time
HASH_THREADS = 4  # hashlib releases the GIL: reading and hashing overlap


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class DataChanged(LeukmlError):
    """A data file's bytes are no longer those its digest was taken from."""


def file_digest(path: Path, seen: Callable[[bytes], None] | None = None) -> str:
    """SHA-256 of the file's bytes (hex, ``DIGEST_CHARS`` long); ``seen`` is given those bytes."""
    if seen is not None:
        data = Path(path).read_bytes()
        seen(data)
        return bytes_digest(data)
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:DIGEST_CHARS]


def bytes_digest(data: bytes) -> str:
    """``file_digest`` of a file whose bytes are ``data``."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def _changed(path: Path) -> DataChanged:
    return DataChanged(
        f"{path} changed while leukml was reading the data (its bytes are not those hashed "
        "moments before); nothing was cached from it: run again once the files stop changing"
    )


def hashed_reader(root: Path) -> Callable[[str, str], bytes]:
    """``read(relpath, digest)``: the bytes of a file under ``root``, read once and checked to be
    those ``digest`` was taken from, so that whatever is decoded from them is what a cache keyed by
    that digest (or a fingerprint of it) may hold, even when the file changes after it was hashed
    (a sync tool, a stain normalisation). The check is the digest memo's own rule where the memo
    holds the file (its stat, taken after reading, unchanged since it was hashed), else a hash of
    the bytes read.

    ``read`` raises ``DataChanged`` (naming the file) when the bytes differ, ``OSError`` when the
    file cannot be read.
    """
    memo = _load_memo(_memo_path(root))

    def read(rel: str, digest: str) -> bytes:
        path = root / rel
        data = path.read_bytes()
        entry = memo.get(rel)
        if entry and entry[1] == digest and entry[0] == _stat_key(os.stat(path)):
            return data
        if bytes_digest(data) != digest:
            raise _changed(path)
        return data

    return read


def _memo_path(root: Path) -> Path:
    name = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return cache_path("digests", f"{name}.json")


def _load_memo(path: Path) -> dict[str, list]:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _digest_or_error(path: Path, seen: Callable[[bytes], None] | None) -> str | OSError:
    try:
        return file_digest(path, seen)
    except OSError as exc:
        return exc


def content_digests(
    root: Path,
    relpaths: Sequence[str],
    seen: Callable[[str, bytes], None] | None = None,
    progress: Progress = silent,
    step: str = "hashing data files",
) -> tuple[dict[str, str], dict[str, str]]:
    """``({relpath: digest}, {relpath: why unreadable})`` for the files under ``root``. A file
    whose stat is unchanged since it was last hashed (and was not racy then) keeps its memoised
    digest; the others are read (``progress`` hears of them as ``step``), and ``seen(relpath, the bytes
    hashed)`` is called on each of them (from worker threads), so that what is learnt from a
    file's bytes (a scan verdict) is of the bytes its digest names and costs no second read."""
    memo_file = _memo_path(root)
    memo = _load_memo(memo_file)
    trusted_before = (time.time() - RACY_S) * 1e9
    stats: dict[str, os.stat_result] = {}
    errors: dict[str, str] = {}
    for rel in relpaths:
        try:
            stats[rel] = os.stat(root / rel)
        except OSError as exc:
            errors[rel] = f"unreadable ({exc.strerror or exc})"
    digests: dict[str, str] = {}
    todo: list[str] = []
    for rel, st in stats.items():
        entry = memo.get(rel)
        if entry and entry[0] == _stat_key(st):
            digests[rel] = entry[1]
        else:
            todo.append(rel)
    hashing = progress(step, len(todo), "files") if todo else contextlib.nullcontext(None)
    with ThreadPoolExecutor(HASH_THREADS) as pool, hashing as advance:

        def digest(rel: str) -> str | OSError:
            return _digest_or_error(root / rel, seen and (lambda data: seen(rel, data)))

        for rel, got in zip(todo, pool.map(digest, todo), strict=True):
            if isinstance(got, OSError):
                errors[rel] = f"unreadable ({got.strerror or got})"
                del stats[rel]
            else:
                digests[rel] = got
            advance(1)
    fresh = {
        rel: [_stat_key(st), digests[rel]]
        for rel, st in stats.items()
        if max(st.st_mtime_ns, st.st_ctime_ns) < trusted_before
    }
    if todo or fresh.keys() != memo.keys():
        write_json_atomic(memo_file, fresh)
    return digests, errors
