"""Long steps say what they do where output is no terminal (a log file, CI, `mlflow run`): a line as
each starts and one as it ends, with its count and rate; and what tracking cost the run."""

from __future__ import annotations

import re
import subprocess

import pytest
from helpers import LEUKML, mlflow_store

from leukml.data.synth import SynthConfig, write_synthetic

STEPS = {
    # a new file is checked from the bytes read to hash it; "checking images" runs only for files
    # whose digests the memo had (tests/test_faults_data.py)
    "hashing and checking data files": (24, "files"),
    "decoding images at 32 px": (24, "img"),
    "extracting base features": (24, "img"),
    "logging the model": (None, "MB"),
}


@pytest.mark.slow
def test_train_to_a_file_says_each_long_step(tmp_path, child_env):
    """New data and an empty cache, so that every step runs; stdout and stderr to one file."""
    data = write_synthetic(tmp_path / "data", SynthConfig(n_all=16, n_hem=8, subjects=4, size=40, seed=3))
    log = tmp_path / "train.log"
    args = ["train", "--data-dir", str(data), "--weights", "none", "--image-size", "32", "--epochs", "1"]
    args += ["--batch-size", "8", "--tracking-uri", mlflow_store(tmp_path)]
    env = child_env(LEUKML_QUIET="", LEUKML_CACHE=str(tmp_path / "cache"))  # the console on
    with log.open("w") as out:
        done = subprocess.run(
            [str(LEUKML), *args], env=env, cwd=tmp_path, stdout=out, stderr=out, timeout=600
        )
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    number = r"\d+(?:\.\d+)?"
    for step, (count, unit) in STEPS.items():
        n = str(count) if count else r"\d+"
        assert re.search(rf"^{step}: {n} {unit}, started$", text, re.M), (step, text)
        ended = rf"^{step}: {n} {unit} in {number} s \({number} {unit}/s\)$"
        assert re.search(ended, text, re.M), (step, text)
    assert "\r" not in text  # no progress bar in a file
    assert re.search(
        rf"^tracking: {number} s of this run's {number} s, {number}% of the {number} s it trained$",
        text,
        re.M,
    )
