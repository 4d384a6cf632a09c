"""Promotion to the MLflow model registry: best run -> registered image classifier + aliases."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from PIL import Image

from leukml.augment import TTAS
from leukml.gradcam import explain_image
from leukml.images import decode_image
from leukml.runreader import search_filter
from leukml.runtime import backend_requirements
from leukml.serving import SIGNATURE, CellClassifier, encode_file
from leukml.tracking_uri import resolve_tracking_uri

DEFAULT_NAME, DEFAULT_ALIAS, PREVIOUS_ALIAS = "leukml-all-classifier", "champion", "previous"
SELECTION_ON_TEST_HELP = (
    "its runs chose epochs and settings by looking at test-split accuracy (the paper's protocol, "
    "no validation split), so that test accuracy is an optimistic estimate; train with "
    "--val-fraction > 0 and promote on a validation metric, or pass --allow-test-selection"
)


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    run_id: str
    metric: str
    value: float
    created: bool


def best_run(
    client: MlflowClient,
    experiment: str,
    metric: str,
    arch: str | None,
    parent_run: str | None,
    study_name: str | None = None,
):
    """The FINISHED run with the highest ``metric`` (its last value) of an experiment, of one
    search (``parent_run``) or of every worker's search of a study (``study_name``); and the
    experiment.

    Raises:
        ValueError: unknown experiment or study, no matching run, every value NaN.
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment {experiment!r} not found; pass --experiment")
    query = "attributes.status = 'FINISHED'"
    if arch:
        query += f" and params.arch = '{arch}'"
    query += search_filter(client, experiment, exp.experiment_id, parent_run, study_name)
    runs = [
        r
        for r in client.search_runs([exp.experiment_id], query, order_by=[f"metrics.`{metric}` DESC"])
        if metric in r.data.metrics
    ]
    if not runs:
        raise ValueError(
            f"no finished run with metric {metric!r}"
            + (f" and arch={arch}" if arch else "")
            + (f" in study {study_name!r}" if study_name else "")
            + f" in experiment {experiment!r}; train one first"
        )
    if np.isnan(runs[0].data.metrics[metric]):  # MLflow sorts NaN last: every value is NaN
        raise ValueError(
            f"every matching run's {metric!r} is NaN (undefined: test_auc on a test split with one "
            f"class, tagged test_one_class=true); promote on another --metric"
        )
    return runs[0], exp


def _keras_model_uri(client: MlflowClient, run, experiment_id: str) -> str:
    models = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    keras_models = [m for m in models if m.name == "model"]
    if not keras_models:
        raise ValueError(
            f"best run {run.info.run_id} has no logged model 'model'; it cannot be "
            f"promoted (was it trained with leukml train?)"
        )
    return f"models:/{keras_models[0].model_id}"


def _gradcam_grid(model, run, client: MlflowClient, per_class: int, out: Path) -> Path | None:
    """A grid of Grad-CAM overlays, one row per class (ALL, then hem), from the run's test split;
    None when the run's data is not reachable from here."""
    try:
        manifest = json.loads(
            Path(client.download_artifacts(run.info.run_id, "split_manifest.json", str(out))).read_text()
        )
    except Exception:
        return None
    root, size = Path(manifest["data_dir"]), int(model.input_shape[1])
    rows = []
    for name in ("all", "hem"):
        paths = [root / p for p in manifest["test"] if f"/{name}/" in f"/{p.lower()}"]
        tiles = [explain_image(model, decode_image(p, size))[0] for p in paths[:per_class] if p.is_file()]
        if tiles:
            tiles += [np.zeros_like(tiles[0])] * (per_class - len(tiles))
            rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    path = out / "gradcam_grid.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def _existing_version(client: MlflowClient, name: str, run_id: str, tta: str):
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:
        return None
    return next(
        (v for v in versions if v.tags.get("run_id") == run_id and v.tags.get("tta", "none") == tta), None
    )


def _next_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name = '{name}'")
    return str(max((int(v.version) for v in versions), default=0) + 1)


def _log_classifier(
    client: MlflowClient, run, keras_uri: str, version: str, gradcam_per_class: int, tta: str
) -> str:
    """Log the image-taking pyfunc in the source run; returns its model URI."""
    model = mlflow.keras.load_model(keras_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keras_path = folder / "model.keras"
        model.save(keras_path)
        artifacts = {"keras_model": str(keras_path)}
        grid = _gradcam_grid(model, run, client, gradcam_per_class, folder)
        if grid is not None:
            artifacts["gradcam_grid"] = str(grid)
        sample = np.zeros((model.input_shape[1],) * 2 + (3,), np.uint8)
        Image.fromarray(sample).save(folder / "example.png")
        example = pd.DataFrame({"image": [encode_file(folder / "example.png")]})
        # the run's own experiment: MLflow refuses to continue a run of another one than the active
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        with mlflow.start_run(run_id=run.info.run_id):
            info = mlflow.pyfunc.log_model(
                name="classifier" if tta == "none" else f"classifier-tta-{tta}",
                python_model=CellClassifier(),
                artifacts=artifacts,
                signature=SIGNATURE,
                input_example=example,
                model_config={"model_version": version, "tta": tta},
                code_paths=[str(Path(__file__).parent)],
                pip_requirements=backend_requirements() + ["pillow", "pandas"],
            )
    return info.model_uri


def promote(
    experiment: str = "leukml",
    metric: str = "test_accuracy",
    arch: str | None = "vgg16",
    name: str = DEFAULT_NAME,
    alias: str = DEFAULT_ALIAS,
    parent_run: str | None = None,
    allow_test_selection: bool = False,
    tracking_uri: str | None = None,
    gradcam_per_class: int = 3,
    study_name: str | None = None,
    tta: str = "none",
) -> Promotion:
    """Register the best run's model as an image classifier and point ``alias`` at it. The runs
    are those of ``experiment``, of one search (``parent_run``) or of a study's every search
    (``study_name``).

    Idempotent: promoting the same run (with the same ``tta``) again reuses its version. The former
    holder of ``alias`` keeps the alias ``previous``. ``tta="dihedral"``: the registered classifier
    averages each image's 8 dihedral variants (tagged ``tta`` on the version).

    Raises:
        ValueError: no matching run, unknown study, no logged model, or test-set selection
            without consent.
    """
    if tta not in TTAS:
        raise ValueError(f"tta={tta!r}; choose one of: {', '.join(TTAS)}")
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run, exp = best_run(client, experiment, metric, arch, parent_run, study_name)
    value = float(run.data.metrics[metric])
    if run.data.tags.get("selection_on_test") == "true" and not allow_test_selection:
        raise ValueError(f"refusing to promote run {run.info.run_id} on {metric}: {SELECTION_ON_TEST_HELP}")
    keras_uri = _keras_model_uri(client, run, exp.experiment_id)
    existing = _existing_version(client, name, run.info.run_id, tta)
    created = existing is None
    if created:
        with contextlib.suppress(MlflowException):  # already registered
            client.create_registered_model(name)
        expected = _next_version(client, name)
        model_uri = _log_classifier(client, run, keras_uri, expected, gradcam_per_class, tta)
        tags = {
            "run_id": run.info.run_id,
            "metric": metric,
            "metric_value": str(value),
            "arch": run.data.params.get("arch", "?"),
            "dataset_fingerprint": run.data.tags.get("dataset_fingerprint", "?"),
            "split_protocol": run.data.tags.get("split_protocol", "?"),
            "selection_on_test": run.data.tags.get("selection_on_test", "?"),
            "tta": tta,
        }
        existing = mlflow.register_model(model_uri, name, tags=tags)
        if str(existing.version) != expected:  # another promotion raced us
            raise ValueError(
                f"registered version {existing.version} but the model reports {expected}; promote again"
            )
    _move_alias(client, name, alias, existing.version)
    return Promotion(name, str(existing.version), run.info.run_id, metric, value, created)


def _move_alias(client: MlflowClient, name: str, alias: str, version: str | int) -> None:
    version = str(version)  # the registry answers ints or strings depending on the store
    try:
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        current = None
    if current is not None and current != version:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    client.set_registered_model_alias(name, alias, version)


def rollback(
    name: str = DEFAULT_NAME, alias: str = DEFAULT_ALIAS, tracking_uri: str | None = None
) -> tuple[str, str]:
    """Swap ``alias`` and ``previous``; returns (new holder of alias, new previous).

    Raises:
        ValueError: there is no ``previous`` version to roll back to.
    """
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        previous = str(client.get_model_version_by_alias(name, PREVIOUS_ALIAS).version)
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise ValueError(
            f"model {name!r} has no '{PREVIOUS_ALIAS}' and '{alias}' versions to "
            f"swap; promote twice before rolling back"
        ) from None
    client.set_registered_model_alias(name, alias, previous)
    client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    return previous, current
