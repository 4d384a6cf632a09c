"""Promotion to the MLflow model registry: best run -> registered image classifier + aliases."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from PIL import Image

from leukml.analysis.comparison import MIXED, Ranking
from leukml.analysis.records import RunRecord
from leukml.analysis.versus import Versus
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.runfilter import field_is
from leukml.data.augment import TestTime
from leukml.data.images import ImageError, decode_image, refuse_blank
from leukml.data.synth import render_cell
from leukml.model.gradcam import gradcam, overlay
from leukml.model.networks import split_network
from leukml.serving import bundle
from leukml.serving.choice import DEFAULT_ALIAS, DEFAULT_NAME, Choice, choose, move_alias
from leukml.serving.pyfunc import SIGNATURE, CellClassifier, encode_file
from leukml.tracking.reader import model_temperature
from leukml.training.runtime import backend_requirements


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    run_id: str
    metric: str
    value: float
    created: bool
    experiment: str
    ranking: Ranking
    versus: Versus | None = None  # the chosen run against the runner-up, with intervals

    @property
    def how(self) -> str:
        """How the run was chosen, for a person: its protocol, test set and rivals."""
        r = self.ranking
        where = (
            "across protocols and test sets" if r.protocol == MIXED else f"under the {r.protocol} protocol"
        )
        test = "" if r.protocol == MIXED else f", test set {r.test_set}"
        return f"best of {len(r.runs)} run(s) {where}{test} ({r.chosen_by})"


def _test_paths(run, client: MlflowClient, out: Path) -> list[Path]:
    """The run's test images (``split_manifest.json``) that exist here; none when its data is not
    reachable from this machine."""
    try:
        manifest = json.loads(
            Path(client.download_artifacts(run.info.run_id, schema.SPLIT_MANIFEST, str(out))).read_text()
        )
    except Exception:
        return []
    root = Path(manifest["data_dir"])
    return [root / p for p in manifest["test"] if (root / p).is_file()]


def _gradcam_grid(model, tests: list[Path], per_class: int, out: Path) -> Path | None:
    """A grid of Grad-CAM overlays, one row per class (ALL, then hem), from the run's test split;
    None when the run's data is not reachable from here."""
    size = int(model.input_shape[1])
    network = split_network(model)  # once: a split traces its own programs (about a second each)

    def tile(path: Path) -> np.ndarray:
        image = decode_image(path, size)
        return overlay(image, gradcam(network, image)[0])

    rows = []
    for name in ("all", "hem"):
        paths = [p for p in tests if f"/{name}/" in f"/{p.as_posix().lower()}"]
        tiles = [tile(p) for p in paths[:per_class]]
        if tiles:
            tiles += [np.zeros_like(tiles[0])] * (per_class - len(tiles))
            rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    path = out / "gradcam_grid.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def _example_cell(tests: list[Path], size: int, out: Path) -> Path:
    """The served model's input example: a cell it accepts, as a small PNG of its input size. The
    run's first usable test image; a cell of the embedded generator where the run's data is not
    reachable from here. (MLflow checks the example by predicting it, and stores it with every
    version as ``serving_input_example.json``.)"""
    pixels = None
    for path in tests[:20]:
        try:
            pixels = decode_image(path, size)
            refuse_blank(pixels)
            break
        except ImageError:
            pixels = None
    if pixels is None:
        rng = np.random.default_rng(0)
        pixels = render_cell(True, np.array([200.0, 150.0, 210.0]), 1.0, size, rng)
    path = out / "example.png"
    Image.fromarray(pixels).save(path)
    return path


def _next_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(field_is("name", name))
    return str(max((int(v.version) for v in versions), default=0) + 1)


def _log_classifier(
    client: MlflowClient, run, keras_uri: str, version: str, gradcam_per_class: int, tta: str, name: str
) -> str:
    """Log the image-taking pyfunc in a promotion run of its own (tag ``leukml_promotion``,
    ``source_run_id``: the training run), nested under the training run it promotes (MLflow's
    parent-run tag: the UI folds it there), which keeps its params, models and end time. The model
    carries the leukml code its ``predict`` imports and pinned requirements (``bundle``), so it
    loads where leukml is not installed. Returns the model's URI."""
    model = mlflow.keras.load_model(keras_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keras_path = folder / "model.keras"
        model.save(keras_path)
        artifacts = {"keras_model": str(keras_path)}
        tests = _test_paths(run, client, folder)
        grid = _gradcam_grid(model, tests, gradcam_per_class, folder)
        if grid is not None:
            artifacts["gradcam_grid"] = str(grid)
        example = pd.DataFrame({"image": [encode_file(_example_cell(tests, model.input_shape[1], folder))]})
        tags = {
            schema.PROMOTION: "true",
            schema.SOURCE_RUN_ID: run.info.run_id,
            schema.REGISTERED_MODEL: name,
            MLFLOW_PARENT_RUN_ID: run.info.run_id,
        }
        promotion = client.create_run(
            run.info.experiment_id, tags=tags, run_name=f"promote-{name}-v{version}"
        ).info.run_id
        # the promotion run's experiment: MLflow refuses to continue a run of another one than the active
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        with mlflow.start_run(run_id=promotion, nested=mlflow.active_run() is not None):
            info = mlflow.pyfunc.log_model(
                name=f"classifier-tta-{tta}" if TestTime(tta).averages else "classifier",
                python_model=CellClassifier(),
                artifacts=artifacts,
                signature=SIGNATURE,
                input_example=example,
                model_config={
                    "model_version": version,
                    "tta": tta,
                    "temperature": model_temperature(client, run),  # the run's calibration
                    "keras_backend": keras.backend.backend(),
                },
                code_paths=[str(bundle.code_folder(folder / "code"))],
                pip_requirements=sorted(set(bundle.pinned(bundle.PREDICT_PACKAGES) + backend_requirements())),
            )
    return info.model_uri


def promote(
    experiment: str | None = None,
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
    protocol: str = "auto",
) -> Promotion:
    """Register the best run's model as an image classifier and point ``alias`` at it. The runs
    are those of ``experiment`` (``find_experiment``), of one search (``parent_run``) or of a
    study's every search (``study_name``), ranked within one protocol and test set
    (``choice.best_run``): ``register(choice.choose(...))``.

    Raises:
        ValueError: no matching run, unknown study, no logged model, runs that do not compare, or
            test-set selection without consent.
    """
    chosen = choose(
        experiment,
        metric,
        arch,
        name,
        parent_run,
        allow_test_selection,
        tracking_uri,
        study_name,
        tta,
        protocol,
    )
    return register(chosen, alias, gradcam_per_class)


def register(chosen: Choice, alias: str = DEFAULT_ALIAS, gradcam_per_class: int = 3) -> Promotion:
    """Register the chosen run's model as an image classifier and point ``alias`` at it.

    Idempotent: promoting the same run (with the same ``tta``) again reuses its version. The former
    holder of ``alias`` keeps the alias ``previous``. ``tta="dihedral"``: the registered classifier
    averages each image's 8 dihedral variants (tagged ``tta`` on the version). The training run is
    left as it ran, but for one tag naming its registered versions.
    """
    client, run, name = MlflowClient(chosen.tracking_uri), chosen.run, chosen.name
    existing, created = chosen.existing, chosen.existing is None
    if created:
        existing = _register(client, chosen, gradcam_per_class)
        for key, text in chosen.versus.tags().items():  # the choice's uncertainty, on the version
            client.set_model_version_tag(name, str(existing.version), key, text)
    move_alias(client, name, alias, existing.version)
    return Promotion(
        name,
        str(existing.version),
        run.info.run_id,
        chosen.metric,
        chosen.value,
        created,
        chosen.experiment.name,
        chosen.ranking,
        chosen.versus,
    )


def _register(client: MlflowClient, chosen: Choice, gradcam_per_class: int):
    """A new version of the chosen name for the chosen run's model, tagged with where it came from
    and how it was chosen; the source run gets one tag naming it."""
    run, name, ranking = chosen.run, chosen.name, chosen.ranking
    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(name)
    expected = _next_version(client, name)
    model_uri = _log_classifier(client, run, chosen.keras_uri, expected, gradcam_per_class, chosen.tta, name)
    source = RunRecord.of(run)
    tags = {
        schema.VERSION_RUN_ID: run.info.run_id,
        schema.METRIC: chosen.metric,
        schema.METRIC_VALUE: str(chosen.value),
        schema.ARCH: source.cell[0],
        schema.DATASET_FINGERPRINT: source.dataset_fingerprint,
        schema.SPLIT_PROTOCOL: source.tags.get(schema.SPLIT_PROTOCOL, "?"),  # the tag, as written
        schema.SELECTION_ON_TEST: source.tag(schema.SELECTION_ON_TEST),
        schema.TTA: chosen.tta,
        # what it was ranked against: one protocol and one test set (or, when asked, a mix)
        schema.RANKED_PROTOCOL: ranking.protocol,
        schema.RANKED_TEST_SET: ranking.test_set,
        schema.RANKED_RUNS: str(len(ranking.runs)),
        schema.N_TEST: source.tag(schema.N_TEST),
    }
    version = mlflow.register_model(model_uri, name, tags=tags)
    if str(version.version) != expected:  # another promotion raced us
        raise LeukmlError(
            f"registered version {version.version} but the model reports {expected}; promote again"
        )
    before = client.get_run(run.info.run_id).data.tags.get(schema.REGISTERED_VERSIONS)
    entry = f"{name}/{version.version}"
    client.set_tag(run.info.run_id, schema.REGISTERED_VERSIONS, f"{before},{entry}" if before else entry)
    return version
