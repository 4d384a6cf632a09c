"""Searches through Optuna, each trial a nested MLflow run, and the report rebuilt from them."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import mlflow_store, run_leukml, tiny_config
from mlflow.tracking import MlflowClient

import leukml.experiments.search
import leukml.training.trainer
from leukml.experiments.search import SearchConfig, incomplete_cells
from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.training.sinks import FanoutSink
from leukml.workflows.search import tracked_search

ROOT = Path(__file__).resolve().parents[1]


def _children(uri: str, parent: str, experiment: str = "leukml"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


@dataclasses.dataclass(frozen=True)
class GridRun:
    folder: Path  # where it ran
    uri: str  # its MLflow store
    storage: str  # its Optuna storage
    env: dict[str, str]  # the child environment it ran with (MLFLOW_TRACKING_URI set)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, tiny_data, child_env) -> GridRun:
    """`mlflow run -e search` in grid mode, run once: the tiny grid (vgg16, resnet50 x adam,
    rmsprop; milestones 1 and 2) as study "tiny-grid", tracked in experiment leukml."""
    folder = tmp_path_factory.mktemp("grid")
    uri, storage = mlflow_store(folder), f"sqlite:///{folder / 'optuna.db'}"
    env = child_env(MLFLOW_TRACKING_URI=uri)
    params = {
        "mode": "grid",
        "data_dir": tiny_data,
        "epochs": 2,
        "eval_epochs": "1,2",
        "image_size": 32,
        "weights": "none",
        "batch_size": 8,
        "storage": storage,
        "study_name": "tiny-grid",
    }
    command = ["mlflow", "run", str(ROOT), "-e", "search", "--env-manager", "local"]
    command += ["--experiment-name", "leukml"]
    for name, value in params.items():
        command += ["-P", f"{name}={value}"]
    proc = subprocess.run(
        command,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return GridRun(folder, uri, storage, env)


def _complete_trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="tiny-grid", storage=storage)
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def _search_and_trials(uri: str):
    """The search's one parent run and its trials' runs."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("leukml")
    parents = client.search_runs([exp.experiment_id], "tags.leukml_search = 'true'")
    assert len(parents) == 1
    return parents[0], _children(uri, parents[0].info.run_id)


@pytest.mark.slow
def test_grid_search_completes_one_trial_per_arch_and_optimizer(grid_run):
    """Every (arch, optimizer) cell a complete trial, in leukml's study and as Optuna's CLI lists it."""
    complete = _complete_trials(grid_run.storage)
    assert sorted((t.params["arch"], t.params["optimizer"]) for t in complete) == [
        ("resnet50", "adam"),
        ("resnet50", "rmsprop"),
        ("vgg16", "adam"),
        ("vgg16", "rmsprop"),
    ]
    cli = subprocess.run(
        ["optuna", "trials", "--study-name", "tiny-grid", "--storage", grid_run.storage],
        env=grid_run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0 and cli.stdout.count("COMPLETE") == 4, cli.stdout + cli.stderr


@pytest.mark.slow
def test_grid_search_nests_each_trial_under_one_parent_run(grid_run):
    """One parent run holding the best trial's params; a child run per trial, tied to its trial."""
    parent, children = _search_and_trials(grid_run.uri)
    assert parent.data.params["best.arch"] in ("vgg16", "resnet50")
    assert len(children) == 4
    assert {c.data.tags["study_name"] for c in children} == {"tiny-grid"}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2", "3"]
    complete = _complete_trials(grid_run.storage)
    assert {c.info.run_id for c in children} == {t.user_attrs["mlflow_run_id"] for t in complete}


@pytest.mark.slow
def test_report_over_the_experiment_reads_the_searchs_trials(grid_run):
    """The README's flow: a report over the whole experiment, naming neither it nor the search; the
    search's parent (under mlflow run it holds every option it was given as a param) is no
    configuration of its own."""
    _, children = _search_and_trials(grid_run.uri)
    out = grid_run.folder / "report"
    done = run_leukml(["report", "--out", str(out)], grid_run.env, grid_run.folder, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from 4 run(s)" in done.stdout
    md = (out / "report.md").read_text()
    assert md.startswith("# leukml report: experiment leukml")
    vgg_adam = next(
        c for c in children if c.data.params["arch"] == "vgg16" and c.data.params["optimizer"] == "adam"
    )
    history = MlflowClient(grid_run.uri).get_metric_history(vgg_adam.info.run_id, "train_accuracy")
    row = next(
        line for line in md.split("### Train accuracy, vgg16")[1].splitlines() if line.startswith("| 2 |")
    )
    assert f"| 2 | {history[-1].value:.4f} |" in row
    assert "NOT the C-NMC 2019 training set" in md
    assert "no milestone at epoch(s) 10" in md
    assert (out / "report.html").is_file() and (out / "figure9_test_accuracy.png").is_file()


class _ValAccuracy(FanoutSink):
    """Passes everything on, with every epoch's ``val_accuracy`` replaced by ``value``."""

    def __init__(self, sink, value: float) -> None:
        super().__init__(sink)
        self.value = value

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().log_epoch(epoch, {**metrics, "val_accuracy": self.value})


@pytest.mark.slow
def test_extended_search_with_pruning(tmp_path, tiny_data, monkeypatch):
    # The median pruner (2 startup trials) must prune trials 2 and 3: their validation accuracy at
    # the first milestone (0.0) is below the first two trials' (1.0), whatever the tiny data gives.
    real_fit, trainings = leukml.training.trainer.fit, []

    def fit_later_trials_worse(network, prepared, config, sink, *args):
        trainings.append(config)
        return real_fit(network, prepared, config, _ValAccuracy(sink, float(len(trainings) <= 2)), *args)

    monkeypatch.setattr(leukml.training.trainer, "fit", fit_later_trials_worse)
    uri = mlflow_store(tmp_path)
    base = tiny_config(
        tiny_data,
        epochs=3,
        eval_epochs=(1, 2, 3),
        val_fraction=0.15,
    )
    search = SearchConfig(
        base=base,
        mode="extended",
        archs=("vgg16",),
        trials=4,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="ext",
    )
    parent, study = tracked_search(MlflowTracker(tracking_uri=uri), search)
    assert study.study_name == "ext"
    states = {t.state for t in study.trials}
    assert len(study.trials) == 4
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert [t.state.name for t in sorted(study.trials, key=lambda t: t.number)] == [
        "COMPLETE",
        "COMPLETE",
        "PRUNED",
        "PRUNED",
    ]
    for trial in study.trials:
        assert 1 in trial.intermediate_values  # reported at the milestones
        assert {"lr", "dropout", "pooling", "batch_size", "class_weight"} <= trial.params.keys()
    children = _children(uri, parent)
    assert len(children) == 4
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    by_number = {c.data.tags["trial_number"]: c.info.status for c in children}
    assert all(by_number[str(t.number)] == expected[t.state.name] for t in study.trials)
    assert all(c.data.params["val_fraction"] == "0.15" for c in children)
    client = MlflowClient(uri)
    for pruned in (c for c in children if c.data.tags["trial_number"] in ("2", "3")):
        assert pruned.data.tags["stopped_early"].startswith("pruned at epoch 1 (val_accuracy 0.0000)")
        history = client.get_metric_history(pruned.info.run_id, "train_loss")
        assert [m.step for m in history] == [1]  # stopped there: epochs 2 and 3 never ran
    assert [t.intermediate_values for t in study.trials if t.number >= 2] == [{1: 0.0}, {1: 0.0}]


@pytest.mark.slow
def test_failing_trial_is_failed_and_the_study_goes_on(tmp_path, tiny_data, monkeypatch):
    real_fit = leukml.training.trainer.fit

    def fit_failing_for_rmsprop(network, prepared, config, *args):
        if config.optimizer == "rmsprop":
            raise RuntimeError("simulated training failure")
        return real_fit(network, prepared, config, *args)

    monkeypatch.setattr(leukml.training.trainer, "fit", fit_failing_for_rmsprop)
    uri = mlflow_store(tmp_path)
    base = tiny_config(tiny_data, epochs=1)
    search = SearchConfig(base=base, archs=("vgg16",), storage=f"sqlite:///{tmp_path / 'o.db'}")
    parent, study = tracked_search(MlflowTracker(tracking_uri=uri), search)
    states = {t.params["optimizer"]: t.state.name for t in study.trials}
    assert states == {"adam": "COMPLETE", "rmsprop": "FAIL"}
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    assert "simulated training failure" in failed.user_attrs["error"]
    children = _children(uri, parent)
    statuses = {c.data.params["optimizer"]: c.info.status for c in children}
    assert statuses == {"adam": "FINISHED", "rmsprop": "FAILED"}
    assert incomplete_cells(study, search) == [("vgg16", "rmsprop")]
    # No study name given: one is made, and the study and every run carry that same one.
    assert re.fullmatch(r"leukml-grid-\d{8}-\d{6}", study.study_name), study.study_name
    assert MlflowClient(uri).get_run(parent).data.tags["study_name"] == study.study_name
    assert {c.data.tags["study_name"] for c in children} == {study.study_name}
    # the parent says what the grid maximised and where its best run is, and logs no option it ignores
    logged = MlflowClient(uri).get_run(parent).data
    assert logged.params["objective"] == "test_accuracy"  # no validation split: the paper's selection
    assert not {"trials", "pruner", "base.arch", "base.optimizer"} & logged.params.keys()
    assert logged.params["base.epochs"] == "1"
    adam = next(c for c in children if c.data.params["optimizer"] == "adam")  # the one that completed
    assert logged.tags["best_run_id"] == adam.info.run_id
    loaded = optuna.load_study(study_name=study.study_name, storage=search.storage_url)
    assert loaded.metric_names == ["test_accuracy"]


@pytest.mark.slow
def test_a_worker_with_another_grid_fails_its_cell_instead_of_claiming_it_forever(
    tmp_path, tiny_data, monkeypatch
):
    # Optuna refuses a parameter whose choices differ from the study's: the trial fails while
    # suggesting, with only some params. Its cell is taken all the same, and the worker ends.
    real_claim, claims = leukml.experiments.search._claim, []

    def claim(study, search):
        claims.append(search.optimizers)
        if len(claims) > 5:
            raise RuntimeError(f"the worker claims its cells again and again: {claims}")
        return real_claim(study, search)

    monkeypatch.setattr(leukml.experiments.search, "_claim", claim)
    uri, storage = mlflow_store(tmp_path), f"sqlite:///{tmp_path / 'optuna.db'}"
    base = tiny_config(tiny_data, epochs=1)
    first = SearchConfig(base=base, archs=("vgg16",), optimizers=("adam",), storage=storage, study_name="g")
    tracked_search(MlflowTracker(tracking_uri=uri), first)
    other = SearchConfig(
        base=base, archs=("vgg16",), optimizers=("rmsprop",), storage=storage, study_name="g"
    )
    _, study = tracked_search(MlflowTracker(tracking_uri=uri), other)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert incomplete_cells(study, other) == [("vgg16", "rmsprop")]


@pytest.mark.slow
def test_grid_with_a_failed_cell_exits_non_zero_naming_the_cell(tmp_path, tiny_data, monkeypatch, child_env):
    # A cell whose training raised stays failed: a worker joining the study finds no cell to train,
    # and `leukml search` must not end as if the grid were done (a script chaining `leukml report`
    # after it would report a grid with a hole).
    real_fit = leukml.training.trainer.fit

    def fit_failing_for_rmsprop(network, prepared, config, *args):
        if config.optimizer == "rmsprop":
            raise RuntimeError("simulated training failure")
        return real_fit(network, prepared, config, *args)

    monkeypatch.setattr(leukml.training.trainer, "fit", fit_failing_for_rmsprop)
    uri, storage = mlflow_store(tmp_path), f"sqlite:///{tmp_path / 'optuna.db'}"
    base = tiny_config(tiny_data, epochs=1)
    search = SearchConfig(base=base, archs=("vgg16",), storage=storage, study_name="holes")
    _, study = tracked_search(MlflowTracker(tracking_uri=uri), search)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]

    tiny = ["--data-dir", str(tiny_data), "--weights", "none", "--image-size", "32", "--epochs", "1"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "leukml"), "search", "--mode", "grid", "--archs", "vgg16"]
        + ["--optimizers", "adam,rmsprop", "--storage", storage, "--study-name", "holes", *tiny]
        + ["--batch-size", "8", "--tracking-uri", uri],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: grid incomplete, no COMPLETE trial for: vgg16+rmsprop; run the same")
    assert "study holes: 2 trials" in done.stdout  # it joined the study and trained nothing new
