"""Where leukml keeps what it computes once: decoded images, scans, base features."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


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
