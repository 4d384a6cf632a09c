"""The benchmark scripts run (--quick) and print their table and headline; numbers are not judged.

The scripts' runs are marked ``bench``: `make bench-smoke` runs them, `make test` does not (they
check that a script still runs, minutes of trainings that test no behaviour of leukml's)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_quick(script: str, child_env, tmp_path, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        cwd=tmp_path,
        env=child_env(LEUKML_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("|---") for line in lines), proc.stdout
    return lines


def test_harness_imports_no_framework():
    """bench/gpu.py runs where there is no TensorFlow, MLflow or Optuna: the harness imports none."""
    heavy = "('tensorflow', 'mlflow', 'optuna', 'keras')"
    code = f"import sys, harness; print([m for m in {heavy} if m in sys.modules])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def test_harness_options_default_by_quick():
    spec = importlib.util.spec_from_file_location("bench_harness", BENCH / "harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    parser = harness.Parser("doc", images=(400, 48), archs=("vgg16,resnet50", "vgg16"))
    assert vars(parser.parse_args([])) == {"quick": False, "images": 400, "archs": "vgg16,resnet50"}
    assert vars(parser.parse_args(["--quick"])) == {"quick": True, "images": 48, "archs": "vgg16"}
    given = parser.parse_args(["--quick", "--images", "7", "--archs", "resnet50"])
    assert (given.images, given.archs) == (7, "resnet50")  # a given value wins


@pytest.mark.slow
def test_extract_quick(child_env, tmp_path):
    last = run_quick("extract.py", child_env, tmp_path)[-1]
    assert last.startswith("headline: leukml extraction throughput / bare predict"), last


def test_fingerprint_quick(child_env, tmp_path):
    last = run_quick("fingerprint.py", child_env, tmp_path)[-1]
    assert last.startswith("headline: dataset fingerprint 300 files: first"), last


@pytest.mark.slow
def test_augment_quick(child_env, tmp_path):
    lines = run_quick("augment.py", child_env, tmp_path)
    assert lines[-1].startswith("headline: dihedral augmentation, end to end / cached variants"), lines[-1]
    assert "largest difference: test accuracy 0.0000" in lines[-1]  # the same model both ways


@pytest.mark.slow
def test_gpu_head_quick(child_env, tmp_path):
    """Both head epochs, batch by batch and compiled, are timed in the same run."""
    lines = run_quick(
        "gpu.py", child_env, tmp_path, "--head-only", "--archs", "vgg16", "--precisions", "float32"
    )
    header, row = lines[-3], lines[-1].strip("|").split("|")
    assert "head epoch img/s, per batch | head epoch img/s, compiled" in header, header
    per_batch, compiled = float(row[8]), float(row[9])
    assert per_batch > 0 and compiled > 0, lines[-1]  # nan where no compiled epoch ran


@pytest.mark.bench
@pytest.mark.parametrize(
    "script, headline",
    [
        ("grid.py", "headline: usual recipe / leukml grid"),
        ("tracking.py", "headline: MLflow tracking overhead"),
        ("serve.py", "headline: serving overhead"),
        ("app.py", "headline: page / (served + Grad-CAM)"),
        ("gpu.py", "gpu headline: study"),  # extraction, epochs, the whole study, the usual recipe
        ("compilecache.py", "headline: a later process with JAX's compilation cache"),
    ],
)
def test_bench_quick(script, headline, child_env, tmp_path):
    last = run_quick(script, child_env, tmp_path)[-1]
    assert last.startswith(headline), last


@pytest.mark.bench
def test_commits_quick(child_env, tmp_path):
    """The comparison with another commit runs both sides (here HEAD against this tree)."""
    head = subprocess.run(["git", "-C", str(BENCH), "rev-parse", "HEAD"], capture_output=True, timeout=60)
    if head.returncode:
        pytest.skip("not a git checkout: no commit to compare with")
    lines = run_quick("commits.py", child_env, tmp_path, "HEAD")
    assert lines[-1].startswith("headline: this tree / base "), lines[-1]
    assert sum(line.startswith(("  train ", "  tracked ", "  grid ")) for line in lines) == 6, lines
