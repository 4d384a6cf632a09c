"""A study searched by two workers, compared as one: each worker's parent run leads to the others,
carries Optuna's figures, and `leukml report` / `promote --study-name` read every worker's trials.
Also what a training run says about its data (MLflow dataset inputs) and where to see it (UI URLs)."""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from helpers import EPOCH_LINE, TINY_ARGS, error_line, mlflow_store, run_leukml
from mlflow.tracking import MlflowClient
from PIL import Image

from leukml.data.discovery import discover
from leukml.experiments.figures import FIGURES, study_figures
from leukml.tracking.uri import LOCAL_UI, serve_command, ui_link

STUDY = "tiny-study"
TINY = [*TINY_ARGS, "--epochs", "1"]


def _env(child_env, uri: str) -> dict[str, str]:
    # VIRTUAL_ENV: as if activated, so the UI's start command is plain `mlflow ui`
    return child_env(MLFLOW_TRACKING_URI=uri, VIRTUAL_ENV=sys.prefix)


@dataclass
class Study:
    tmp: Path
    uri: str
    experiment_id: str
    parents: list[str]  # worker 1's, worker 2's
    trials: dict[str, list]  # parent -> its trial runs
    outputs: list[str]  # each worker's stdout
    decoy: str
    env: dict[str, str]  # a `leukml` child's, on this study's store


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_data, child_env) -> Study:
    """Two workers of one extended study, one after the other, one trial each (another seed each,
    so that their parameters differ). Beside them, a decoy run outside the study that would win
    every selection."""
    tmp = tmp_path_factory.mktemp("study")
    uri, storage = mlflow_store(tmp), f"sqlite:///{tmp / 'optuna.db'}"
    outputs, env = [], _env(child_env, uri)
    for seed in ("42", "7"):
        args = ["search", "--mode", "extended", "--trials", "1", "--archs", "vgg16", "--seed", seed]
        args += ["--study-name", STUDY, "--storage", storage, "--data-dir", str(tiny_data), *TINY]
        proc = run_leukml(args, env, tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout)
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("leukml").experiment_id
    parents = [
        r.info.run_id
        for r in client.search_runs(
            [experiment_id], "tags.leukml_search = 'true'", order_by=["attributes.start_time ASC"]
        )
    ]
    assert len(parents) == 2
    trials = {p: client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{p}'") for p in parents}
    assert [[r.info.status for r in t] for t in trials.values()] == [["FINISHED"], ["FINISHED"]]
    decoy = client.create_run(experiment_id, tags={"study_name": "another-study", "trial_number": "0"})
    for key, value in {"arch": "vgg16", "optimizer": "adam"}.items():
        client.log_param(decoy.info.run_id, key, value)
    for metric in ("test_accuracy", "val_accuracy", "train_accuracy"):
        client.log_metric(decoy.info.run_id, metric, 2.0, step=1)
    client.set_terminated(decoy.info.run_id, "FINISHED")
    return Study(tmp, uri, experiment_id, parents, trials, outputs, decoy.info.run_id, env)


@pytest.mark.slow
def test_search_prints_where_to_see_its_runs(study):
    lines = study.outputs[0].splitlines()
    assert lines[-2] == f"start the MLflow UI: mlflow ui --backend-store-uri {study.uri} --port 5000"
    table = f"{LOCAL_UI}/#/experiments/{study.experiment_id}/runs?workflowType=machine_learning"
    assert lines[-1] == f"the runs in the MLflow UI: {table}"


def test_the_parent_runs_of_a_study_link_to_each_other(study):
    client = MlflowClient(study.uri)
    for parent in study.parents:
        assert client.get_run(parent).data.tags["study_parent_runs"] == ",".join(study.parents)
    # the decoy's own "study" has no search parent
    assert client.get_run(study.decoy).data.tags.get("study_parent_runs") is None


def test_each_parent_logs_the_figures_of_the_study_it_could_draw(study, tmp_path):
    client = MlflowClient(study.uri)
    first, second = ({a.path for a in client.list_artifacts(p, "study")} for p in study.parents)
    figures = {f"study/{n}.png" for n in ("optimization_history", "param_importances", "parallel_coordinate")}
    # worker 2 ended with both trials complete, their parameters differ: every figure says something
    assert figures | {"study/README.txt"} == second
    for path in figures:
        with Image.open(client.download_artifacts(study.parents[1], path, str(tmp_path))) as image:
            assert min(image.size) > 100
    # worker 1 ended with its one trial: only the history, and the note says why
    assert first == {"study/optimization_history.png", "study/README.txt"}
    note = Path(client.download_artifacts(study.parents[0], "study/README.txt", str(tmp_path))).read_text()
    assert "param_importances.png: not drawn: 1 complete trial; it needs at least 2" in note
    assert "parallel_coordinate.png: not drawn: 1 complete trial" in note


def test_a_search_parent_logs_what_it_looked_for(study):
    """What it maximised, the options its mode uses, its best trial's run; not the base options its
    trials set themselves (they would read as if they acted)."""
    client = MlflowClient(study.uri)
    parent = client.get_run(study.parents[1])  # worker 2: it ended with both trials
    params = parent.data.params
    assert params["objective"] == "val_accuracy"  # an extended search carves a validation split
    assert (params["trials"], params["pruner"]) == ("1", "median")
    searched = ("arch", "optimizer", "lr", "dense_units", "dropout", "pooling", "batch_size")
    searched += ("class_weight", "augment", "fine_tune_layers")
    assert not {f"base.{k}" for k in searched} & params.keys()
    assert params["base.epochs"] == "1"  # the options every trial shares stay
    best = client.get_run(parent.data.tags["best_run_id"])
    trials = [r for t in study.trials.values() for r in t]
    assert best.info.run_id in {r.info.run_id for r in trials}
    assert best.data.metrics["val_accuracy"] == pytest.approx(parent.data.metrics["best_value"])
    assert parent.data.metrics["best_value"] == max(r.data.metrics["val_accuracy"] for r in trials)
    storage = f"sqlite:///{study.tmp / 'optuna.db'}"
    assert optuna.load_study(study_name=STUDY, storage=storage).metric_names == ["val_accuracy"]


def _assert_data_inputs(run, data_dir: Path, sides: set[str]) -> None:
    """The run's MLflow dataset inputs: one per split side, named after the data folder, with the
    dataset's fingerprint as digest and the side as context."""
    inputs = run.inputs.dataset_inputs
    contexts = [{t.key: t.value for t in i.tags}["mlflow.data.context"] for i in inputs]
    assert sorted(contexts) == sorted(sides)
    for i, side in zip(inputs, contexts, strict=True):
        assert i.dataset.name == f"{data_dir.name}/{side}"
        assert i.dataset.digest == discover(data_dir).fingerprint == run.data.tags["dataset_fingerprint"]
        assert i.dataset.source_type == "local" and str(data_dir) in i.dataset.source
        assert {t.key: t.value for t in i.tags}["n_images"] == run.data.tags[f"n_{side}"]


def test_a_trial_run_logs_its_data_as_mlflow_inputs(study, tiny_data):
    for trials in study.trials.values():  # extended searches carve a validation split
        _assert_data_inputs(trials[0], tiny_data, {"train", "val", "test"})


@pytest.mark.slow
def test_report_reads_every_worker_of_a_study(study):
    out = study.tmp / "report"
    proc = run_leukml(["report", "--study-name", STUDY, "--out", str(out)], study.env, study.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("from 2 run(s)")  # both workers' trials, not the decoy
    md = (out / "report.md").read_text()
    assert f"study {STUDY} (2 search run(s): {', '.join(study.parents)})" in md.splitlines()[0]
    client = MlflowClient(study.uri)
    for parent in study.parents:
        assert "report/report.md" in {a.path for a in client.list_artifacts(parent, "report")}


@pytest.mark.slow  # as the other promotions (tests/test_registry_serving.py)
def test_promote_chooses_among_every_worker_of_a_study(study):
    args = ["promote", "--study-name", STUDY, "--metric", "val_accuracy", "--allow-test-selection"]
    # the two workers split with other seeds: their validation numbers come from other cells
    refused = run_leukml(args, study.env, study.tmp)
    assert refused.returncode == 1
    assert "were tested on 2 different test sets" in refused.stderr and "--protocol mixed" in refused.stderr
    proc = run_leukml([*args, "--protocol", "mixed"], study.env, study.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("experiment leukml: best of 2 run(s) across protocols and test sets")
    chosen = re.search(r"^run (\w+) \(val_accuracy ([\d.]+)\) registered", proc.stdout, re.M).groups()
    values = {r.info.run_id: r.data.metrics["val_accuracy"] for t in study.trials.values() for r in t}
    assert chosen[0] in values and float(chosen[1]) == pytest.approx(max(values.values()), abs=1e-4)
    assert values[chosen[0]] == max(values.values())
    # runnable from any folder: the store is named, not looked for in ./mlflow.db
    serve = "mlflow models serve -m models:/leukml-all-classifier@champion --env-manager local -p 5001"
    assert proc.stdout.splitlines()[-1] == f"serve: MLFLOW_TRACKING_URI={study.uri} {serve}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["report", "--parent-run", "abc", "--study-name", STUDY], ("--parent-run abc", "give one")),
        pytest.param(
            ["promote", "--parent-run", "abc", "--study-name", STUDY],
            ("--parent-run abc", "give one"),
            marks=pytest.mark.slow,
        ),
        (["report", "--study-name", "no-such-study"], ("'no-such-study'", "check the name", "--experiment")),
    ],
    ids=["report-both", "promote-both", "report-unknown-study"],
)
def test_study_choice_refused_in_one_line(study, args, expected, no_backend):
    """Before the backend's import (promote's too: the choice needs no model)."""
    proc = run_leukml(args, study.env | no_backend, study.tmp)
    assert proc.returncode == 1
    line = error_line(proc.stderr)
    assert line.startswith("Error: ") and all(text in line for text in expected), line


@pytest.mark.slow
def test_promote_refuses_an_unknown_study(study):
    from leukml.serving import choice

    with pytest.raises(ValueError, match="study 'no-such-study' has no search run in experiment 'leukml'"):
        choice.best_run(MlflowClient(study.uri), "leukml", "val_accuracy", None, None, "no-such-study")


@pytest.mark.slow
def test_a_quiet_train_prints_no_epoch_and_ends_with_the_url_of_its_run_and_logs_its_data(
    tmp_path, tiny_data, child_env
):
    """LEUKML_QUIET=1 (child_env's): no epoch line (tests/test_cli_train.py's training prints them)."""
    uri = mlflow_store(tmp_path)
    proc = run_leukml(["train", "--data-dir", str(tiny_data), *TINY], _env(child_env, uri), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if EPOCH_LINE.match(line)]
    assert lines[-2] == f"start the MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000"
    page = f"{LOCAL_UI}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    page += "?workflowType=machine_learning"
    assert lines[-1] == f"this run in the MLflow UI: {page}"
    _assert_data_inputs(run, tiny_data, {"train", "test"})  # no --val-fraction: no val input


def test_ui_link_of_a_tracking_server_is_the_server_itself():
    run = ui_link("https://user:secret@mlflow.example.org:8443/mlflow/", "7", "abc")
    page = "https://mlflow.example.org:8443/mlflow/#/experiments/7/runs/abc?workflowType=machine_learning"
    assert run == (page, None)
    table = ui_link("http://127.0.0.1:5005", "7")
    assert table.url == "http://127.0.0.1:5005/#/experiments/7/runs?workflowType=machine_learning"
    assert table.lines("runs") == [f"runs: {table.url}"]


def test_ui_link_of_a_local_store_says_how_to_serve_it(monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)  # as if activated: plain `mlflow`
    link = ui_link("postgresql://leukml:secret@db:5432/mlflow", "1", "r1")
    # the model-training view, as the runs table: MLflow 3 opens its GenAI view otherwise
    assert link.url == "http://127.0.0.1:5000/#/experiments/1/runs/r1?workflowType=machine_learning"
    # the port the URL names, named in the command too
    assert link.start == "mlflow ui --backend-store-uri 'postgresql://leukml:***@db:5432/mlflow' --port 5000"


def test_commands_name_a_relative_store_by_its_absolute_path(monkeypatch, tmp_path):
    """Printed commands work from any folder: run elsewhere, a relative store would be a new, empty one."""
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (
        ui_link("sqlite:///runs/mlflow.db", "1").start == f"mlflow ui --backend-store-uri {store} --port 5000"
    )
    assert ui_link("mlruns", "1").start == f"mlflow ui --backend-store-uri {tmp_path / 'mlruns'} --port 5000"


def test_the_serve_command_names_its_tracking_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    serve = "mlflow models serve -m models:/leukml-all-classifier@champion --env-manager local -p 5001"
    default = f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'mlflow.db'} {serve}"
    assert serve_command("leukml-all-classifier", "champion", None) == default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db")  # relative: made absolute
    relative = f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'runs' / 'mlflow.db'} {serve}"
    assert serve_command("leukml-all-classifier", "champion", None) == relative
    given = serve_command("my model", "prod", "postgresql://leukml:secret@db:5432/mlflow")
    assert given == (
        "MLFLOW_TRACKING_URI='postgresql://leukml:***@db:5432/mlflow' "
        "mlflow models serve -m 'models:/my model@prod' --env-manager local -p 5001"
    )


def test_ui_start_command_names_this_venvs_mlflow_when_not_activated(monkeypatch):
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    link = ui_link("sqlite:////tmp/mlflow.db", "1")
    own = Path(sys.executable).parent / "mlflow"
    assert link.start == f"{own} ui --backend-store-uri sqlite:////tmp/mlflow.db --port 5000"


def test_study_figures_are_drawn_without_a_warning_or_said_why_not(capfd):
    study = optuna.create_study(direction="maximize")  # in memory
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna calls these figures experimental, on every call
        figures, skipped = study_figures(study)
        assert figures == {} and skipped == dict.fromkeys(FIGURES, "no complete trial yet")
        lr = optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
        for value in (1e-4, 1e-3, 1e-2):
            study.add_trial(
                optuna.trial.create_trial(params={"lr": value}, distributions={"lr": lr}, value=value)
            )
        figures, skipped = study_figures(study)
    assert list(figures) == list(FIGURES) and skipped == {}
    assert capfd.readouterr().err == ""  # nor a line of Optuna's logger
