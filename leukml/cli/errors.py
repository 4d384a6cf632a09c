"""What an expected failure says on the command line: one line naming the input, what is wrong and
what to do. Expected are leukml's own errors (``LeukmlError``: the library worded them) and the
known MLflow, database, HTTP and OS errors. Anything else, a ``ValueError`` of numpy or Keras
included, is a bug: it keeps its traceback, followed by ``REPORT_BUG``.

MLflow, requests and SQLAlchemy are looked up in ``sys.modules``, never imported: an exception of
theirs can only exist once they are loaded, and `leukml synth` should not pay for importing them.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from urllib.parse import urlsplit

from leukml.common.errors import LeukmlError, OptionError
from leukml.common.stores import store_problem
from leukml.experiments.config import storage_url

# MLflow error codes that are about the user's inputs or the server, not about leukml's code
_MLFLOW_EXPECTED = {
    "RESOURCE_DOES_NOT_EXIST",
    "NOT_FOUND",
    "ENDPOINT_NOT_FOUND",
    "INVALID_PARAMETER_VALUE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "CUSTOMER_UNAUTHORIZED",
    "TEMPORARILY_UNAVAILABLE",
}
_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.ELOOP: "a symbolic link points (through others) back at itself: fix or remove it",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EROFS: "the file system is read-only: choose another place",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}
SERVER_HELP = "start the server or fix --tracking-uri / $MLFLOW_TRACKING_URI"
REPORT_BUG = (
    "leukml did not expect this error: it is a bug, please report it with the traceback above, the "
    "command line you ran, `leukml --version` and the Keras backend ($KERAS_BACKEND)"
)


def _loaded(module: str, name: str) -> type | tuple[()]:
    """A class of an already-imported module, else an empty tuple (matches nothing in isinstance)."""
    return getattr(sys.modules.get(module), name, ())


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those it wraps: causes, contexts, and urllib3's ``reason``."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if isinstance(item, BaseException) and all(item is not s for s in seen):
            seen.append(item)
            todo += [item.__cause__, item.__context__, getattr(item, "reason", None)]
    return seen


def _flat(text: str, limit: int | None = 300) -> str:
    """One line; cut at ``limit`` characters (a server's error page can be long)."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _server(url: str | None) -> str:
    """scheme://host:port of a URL, without credentials or path."""
    parts = urlsplit(url or "")
    if not parts.hostname:
        return ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: say the host only
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _tracking_uri(inputs: dict) -> str:
    """The tracking URI the command used, fit to print (no password)."""
    mlflow = sys.modules.get("mlflow")
    uri = inputs.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    uri = uri or (mlflow.get_tracking_uri() if mlflow else "the tracking server")
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)


def _unreachable(exc: BaseException, inputs: dict) -> str | None:
    """A server or database that did not answer, whoever wrapped the error."""
    chain = _chain(exc)
    http_errors = (
        _loaded("requests.exceptions", "ConnectionError"),
        _loaded("requests.exceptions", "Timeout"),
        _loaded("requests.exceptions", "RetryError"),
        _loaded("urllib3.exceptions", "HTTPError"),
    )
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, http_errors) for e in chain) or "Max retries exceeded" in text:
        called = re.search(r"API request to (\S+) failed", text)
        request = next((getattr(e, "request", None) for e in chain if getattr(e, "request", None)), None)
        url = _server(called.group(1) if called else getattr(request, "url", None)) or _tracking_uri(inputs)
        return f"cannot reach the MLflow server at {url}: {_why_unreachable(text)}; {SERVER_HELP}"
    database = _loaded("sqlalchemy.exc", "DatabaseError")
    if database and (db_error := next((e for e in chain if isinstance(e, database)), None)):
        reason = _flat(str(getattr(db_error, "orig", None) or db_error).splitlines()[0])
        if said := _store_fault(db_error, reason, inputs):
            return said
        options = "--storage / $OPTUNA_STORAGE or --tracking-uri" if "storage" in inputs else "--tracking-uri"
        return f"cannot use the database: {reason}; start the database server or fix {options}"
    return None


def _store_fault(db_error: BaseException, reason: str, inputs: dict) -> str | None:
    """A store that is not a database, corrupted, read-only or full: the Optuna storage when its
    tables are the statement's (a search), else the tracking store."""
    statement = str(getattr(db_error, "statement", "") or "")
    if "storage" in inputs and re.search(r"\b(studies|trials|trial_\w+|study_\w+|version_info)\b", statement):
        return store_problem(storage_url(inputs.get("storage")), "--storage", reason)
    return store_problem(_tracking_uri(inputs), "--tracking-uri", reason)


def _why_unreachable(text: str) -> str:
    if m := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text):
        return m.group(1).strip().lower()
    if m := re.search(r"too many (\d+) error responses", text):
        return f"it kept answering HTTP {m.group(1)}"
    return "timed out" if "timed out" in text.lower() or "timeout" in text.lower() else "no answer"


def _mlflow(exc: Exception, inputs: dict) -> str | None:
    code = getattr(exc, "error_code", "")
    message = _flat(getattr(exc, "message", str(exc)))
    remote = message.startswith("API request to") or type(exc).__name__ == "RestException"
    if code not in _MLFLOW_EXPECTED and not remote and not store_problem("", "", message):
        return None
    uri = _tracking_uri(inputs)
    if said := store_problem(uri, "--tracking-uri", message):  # MLflow's own wording of a store fault
        return said
    model = inputs.get("model_uri")
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"):
        return (
            f"the MLflow server at {_server(uri) or uri} refuses: {message}; set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD for an account allowed to do this (docs/team.md)"
        )
    if exc.get_http_status_code() >= 500:
        return f"the MLflow server at {uri} failed: {message}; see the server's log, or try again"
    if code == "ENDPOINT_NOT_FOUND":
        return f"{uri} does not answer as an MLflow tracking server ({message}); fix --tracking-uri"
    if model and code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return (
            f"model {model!r} not found on {uri}: {message}; register one with `leukml promote`, "
            "or check --model-uri and --tracking-uri / $MLFLOW_TRACKING_URI"
        )
    if model:
        return f"model {model!r} on {uri}: {message}; check --model-uri and $MLFLOW_TRACKING_URI"
    return f"{message} (tracking server {uri}); check the names and ids given, and --tracking-uri"


def _os_error(exc: OSError) -> str:
    if exc.filename is None or not exc.strerror:
        return _flat(str(exc), None)  # worded by leukml (or a plain strerror): already says it all
    path = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{path}: {exc.strerror}; {_OS_FIXES.get(exc.errno, 'check the path')}"


def one_line(exc: Exception, inputs: dict) -> str | None:
    """The one-line message for an expected failure, or None for a bug (keep its traceback).

    Args:
        exc: what the command raised.
        inputs: the command's parameters (``model_uri``, ``tracking_uri``, ``storage``), named in
            the message when they are the likely cause.
    """
    message = _worded(exc, inputs)
    if isinstance(exc, LeukmlError) and exc.__cause__ and one_line(exc.__cause__, inputs) is None:
        return None  # leukml's words on top of a bug (raise ... from exc): the bug's traceback shows
    notes = getattr(exc, "__notes__", [])  # what leukml added on the way out (a run left RUNNING)
    return "; ".join([message, *(_flat(n, None) for n in notes)]) if message and notes else message


def _worded(exc: Exception, inputs: dict) -> str | None:
    if message := _unreachable(exc, inputs):
        return message
    if isinstance(exc, _loaded("mlflow.exceptions", "MlflowException")):
        return _mlflow(exc, inputs)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, OptionError):
        return _flagged(exc, inputs)
    if isinstance(exc, LeukmlError):  # leukml.data.images.ImageError too
        return _flat(str(exc), None)
    return None  # a ValueError, KeyError, ... that leukml did not word: a bug


def _flagged(exc: OptionError, inputs: dict) -> str:
    """An option's error with the option spelt as the command's flag (``image_size=20; ...`` ->
    ``--image-size 20; ...``) where the command has that option; else as the library worded it."""
    message, named = _flat(str(exc), None), f"{exc.option}="
    if exc.option in inputs and message.startswith(named):
        return f"--{exc.option.replace('_', '-')} {message[len(named) :]}"
    return message
