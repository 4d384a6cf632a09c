"""MLflow search filters built from the run schema's names, with one quoting of values.

``where(tag_is(STUDY_NAME, name), tag_present(TRIAL_NUMBER))`` is
``tags.study_name = 'cells' and tags.trial_number != ''``. Every filter leukml sends to
``search_runs`` (and the registry's and logged models' searches) is made here, so that a value
with a quote in it (a study name) is quoted the one way MLflow reads.
"""

from __future__ import annotations

from leukml.common.runschema import PARENT_RUN_ID


def quoted(value: str) -> str:
    """A value quoted for an MLflow search filter, which reads no backslash escapes: in single
    quotes, or in double quotes when it holds a single quote."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def tag_is(name: str, value: str) -> str:
    return f"tags.{name} = {quoted(value)}"


def tag_present(name: str) -> str:
    """The run has the tag, with a value (an exact comparison: MLflow compares only the runs that
    have the tag; ``IS NOT NULL`` came to run searches after the oldest MLflow leukml supports)."""
    return f"tags.{name} != ''"


def param_is(name: str, value: str) -> str:
    return f"params.{name} = {quoted(value)}"


def param_present(name: str) -> str:
    """The run has the param, with a value (as ``tag_present``)."""
    return f"params.{name} != ''"


def status_is(status: str) -> str:
    """``FINISHED``, ``RUNNING``, ``FAILED``, ``KILLED``."""
    return f"attributes.status = {quoted(status)}"


def child_of(run_id: str) -> str:
    """The run is nested under ``run_id`` (MLflow's parent-run tag)."""
    return tag_is(PARENT_RUN_ID, run_id)


def field_is(name: str, value: str) -> str:
    """A field of a registry or logged-model search (``name``, ``source_run_id``) equal to a value."""
    return f"{name} = {quoted(value)}"


def where(*clauses: str) -> str:
    """The clauses joined by ``and`` (MLflow's filters know no ``or``); empty ones left out."""
    return " and ".join(c for c in clauses if c)
