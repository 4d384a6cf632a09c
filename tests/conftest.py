"""Shared fixtures: one tiny synthetic dataset per session, a private cache per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


@pytest.fixture
def child_env():
    """Environment for a child process: this venv first on PATH (mlflow run / serve exec
    `python` and `uvicorn` from PATH), and no MLflow run or experiment leaked from in-process
    tests (mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID)."""

    def make(**extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
        }
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        env["LEUKML_QUIET"] = "1"
        env.update(extra)
        return env

    return make
