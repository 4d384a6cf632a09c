"""What a broken store says: the MLflow tracking database or an Optuna storage that is not a
database, is corrupted, read-only or on a full disk, worded as one line naming the store and what
to do. Shared by the CLI's error lines and the search's storage (which names ``--storage``).

Works on the database driver's message only: nothing here imports SQLAlchemy, MLflow or Optuna
(``check_sqlite`` asks Python's own ``sqlite3``, so a command can refuse a broken file before it
pays for importing the Keras backend).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

from leukml.common.errors import LeukmlError

# the driver's words (SQLite's, PostgreSQL's, the OS's) -> what is wrong, what to do
_FAULTS = (
    ("file is not a database", "is not a database", "move that file away, or give another {option}"),
    (
        "malformed",
        "is corrupted (database disk image is malformed)",
        "move that file away and start a new store, or give another {option} "
        "(`sqlite3 FILE .recover` may rescue what it holds)",
    ),
    (
        "readonly database",
        "is read-only (attempt to write a readonly database)",
        "check the permissions of the file and its folder and how its disk is mounted, "
        "or give another {option}",
    ),
    (
        "read-only file system",
        "is on a read-only file system",
        "copy it to a writable place, or give another {option}",
    ),
    (
        "unable to open database file",
        "cannot be opened (unable to open database file)",
        "check that its folder exists and is writable, or give another {option}",
    ),
    (
        "disk is full|no space left|could not extend file|disk full",
        "has no space left on its disk",
        "free some space there (or move the store), then run again",
    ),
)
SCHEMES = "sqlite:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://USER:PASSWORD@HOST:PORT/DB"


class StoreError(OSError, LeukmlError):
    """A store that cannot be used, worded for the user (one line, the store and the fix)."""


def masked(uri: str) -> str:
    """A store URI fit to print: a password replaced by ``***``."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)


def store_problem(store: str, option: str, reason: str) -> str | None:
    """The one line for a store the driver refused with ``reason``, or None when the reason is not a
    known fault of the store itself (a server that does not answer is worded elsewhere).

    Args:
        store: the store's URI (a password in it is masked).
        option: where the user chose it (``--tracking-uri``, ``--storage``), named in the fix.
        reason: the driver's message.
    """
    said = " ".join(str(reason).split()).lower()
    for words, wrong, fix in _FAULTS:
        if re.search(words, said):
            return f"{_name(store)} {wrong}: {fix.format(option=option)}"
    return None


def unknown_scheme(store: str, option: str) -> str:
    """The one line for a store URL whose scheme no installed database driver knows."""
    scheme = store.split(":", 1)[0] if ":" in store else store
    return f"{option} {masked(store)}: no database driver for {scheme!r}; give {SCHEMES}"


def check_sqlite(store: str, option: str) -> None:
    """Refuse a ``sqlite:///`` store whose file exists but is not a database or cannot be written,
    in ``store_problem``'s words; any other store, a missing file (MLflow makes it) or a fault
    recognised only later (a corrupted table, a locked or full disk) is left to the store's user.

    Raises:
        StoreError: the file is not a database or is read-only.
    """
    path = Path(store[len("sqlite:///") :]) if store.startswith("sqlite:///") else None
    if path is None or not path.is_file():
        return
    # a header write in a transaction rolled back: the file is read (not a database?) and must be
    # writable (a read-only file or mount fails the write), and is left byte for byte as it was
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=1)
        ) as db:
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {int(version)}")
            db.rollback()
    except sqlite3.DatabaseError as exc:
        if said := store_problem(store, option, str(exc)):
            raise StoreError(said) from None


def _name(store: str) -> str:
    if store.startswith("sqlite:///"):
        return f"the store {store} (file {store[len('sqlite:///') :] or '?'})"
    return f"the store {masked(store)}"
