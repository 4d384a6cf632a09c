"""Shared fixtures: one tiny synthetic dataset per session, a private cache per session."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# the page's fixtures (serve_page, source, small_model), shared by its test modules
pytest_plugins = ("pages",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with the most end-to-end (``slow``) tests first, each file's tests in their order:
    ``make test``'s workers take whole files in this order (``--dist loadfile``), so the long files
    start early and the short ones fill the end, instead of one worker finishing a long file alone
    on the two cores. The order is a function of the files alone: every worker collects the same."""
    slow: dict[Path, int] = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + bool(item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="session")
def hooks():
    """``docs/hooks.py``, the module that generates the reference when the site is built."""
    spec = importlib.util.spec_from_file_location("leukml_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def runs_reference(hooks) -> str:
    """The runs reference (``docs/reference/runs.md``) as the site shows it: tables generated."""
    return hooks.render((DOCS / "reference" / "runs.md").read_text())


@pytest.fixture(scope="session", autouse=True)
def leukml_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("leukml-cache")
    os.environ["LEUKML_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, leukml_cache) -> Path:
    """48 synthetic cells (32 ALL, 16 hem, 6 subjects, 3 folds) at 48 px."""
    from leukml.data.synth import SynthConfig, write_synthetic

    out = tmp_path_factory.mktemp("tiny-data")
    return write_synthetic(out, SynthConfig(n_all=32, n_hem=16, subjects=6, size=48, seed=7))


@pytest.fixture(scope="session")
def real_sample() -> Path:
    if not (REAL_SAMPLE / "cnmc-sample").is_dir():
        pytest.skip(f"real C-NMC sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


# The environment pytest started with. In-process tests change the live one (the CLI's group callback
# sets TF_CPP_MIN_LOG_LEVEL, mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID, fixtures set
# LEUKML_QUIET), so a child built from it would run as no user's does and depend on test order.
STARTED_WITH = dict(os.environ)
# Never handed down unless a test asks: TF_CPP_MIN_LOG_LEVEL hides the TensorFlow lines that the
# console tests look for; the others tie a child to a test's run, experiment or quietness.
NOT_INHERITED = (
    "TF_CPP_MIN_LOG_LEVEL",
    "LEUKML_QUIET",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
)


@pytest.fixture(scope="session")
def child_env(leukml_cache):
    """Environment for a child process, built from the one pytest started with (not the live one):
    this venv first on PATH (mlflow run / serve exec `python` and `uvicorn` from PATH), the session's
    cache, LEUKML_QUIET=1, none of NOT_INHERITED otherwise; ``extra`` (what the child needs) last."""

    def make(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in STARTED_WITH.items() if k not in NOT_INHERITED}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        env["LEUKML_CACHE"] = str(leukml_cache)
        env["LEUKML_QUIET"] = "1"
        env.update(extra)
        return env

    return make


@pytest.fixture(scope="session")
def no_backend(tmp_path_factory) -> dict[str, str]:
    """A child's environment additions under which importing Keras or TensorFlow fails: for the
    refusals that come before the backend's seconds of import (and would come after them if an
    import moved up)."""
    blocked = tmp_path_factory.mktemp("no-backend")
    for package in ("keras", "tensorflow"):
        (blocked / package).mkdir()
        (blocked / package / "__init__.py").write_text(f"raise ImportError('{package} was imported')\n")
    return {"PYTHONPATH": str(blocked)}


@pytest.fixture(scope="session", autouse=True)
def outside_the_checkout(tmp_path_factory):
    """Every test runs in a folder of its session's own: an in-process tracked training on a
    ``sqlite:///`` store under ``tmp_path`` still puts its artifacts (models of tens of MB) in
    MLflow's default ``./mlruns`` of the current folder, which would be the checkout."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)
