"""The run schema: every tag, param and artifact name a leukml run carries, written here once.

As MLflow keeps its own names in ``mlflow.utils.mlflow_tags``, leukml keeps its own here, low
enough for every layer to import (it imports nothing). The names are declared in tables, grouped
by the run that carries them, one line each: ``name (who writes it): what it says and its values``
(a longer text goes on, indented, on the next lines). ``NAMES`` holds them in that order, and the
runs reference (``docs/reference/runs.md``) is made from it. A tag name is spelled as a string
nowhere else in ``leukml/`` (``tests/test_runschema.py``). Readers ask a run through
``RunRecord``'s accessors (``leukml.analysis.records``) and build search filters with
``leukml.common.runfilter``.

A training run's params are its options under their field names (the option is their one
definition: ``leukml.common.options``); only the params beyond the options are declared here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    """One documented name of a run: ``shown`` as the reference lists it (a pattern such as
    ``skipped_<reason>`` for a family of names, or two names), its ``kind`` (tag, param, artifact),
    the ``run`` that carries it (``RUNS``), what it says (``what``) and who writes it (``by``: a
    module under ``leukml/``, or the command whose runs carry it)."""

    shown: str
    kind: str
    run: str
    what: str
    by: str

    @property
    def name(self) -> str:
        """The name as written (a pattern's fixed part: ``skipped_``; a folder's: ``checkpoint``)."""
        return re.split(r"[</]|, ", self.shown)[0]


RUNS = ("training", "search", "cv", "protocols", "promotion", "version")
NAMES: list[Name] = []
_ENTRY = re.compile(r"^(.+?) \((.+?)\): (.*)$")


def _declare(kind: str, run: str, table: str) -> tuple[str, ...]:
    """The names of a table of ``name (by): what`` lines, each added to ``NAMES``."""
    declared: list[Name] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):  # the text of the line before goes on
            last = declared.pop()
            declared.append(Name(last.shown, kind, run, f"{last.what} {line.strip()}", last.by))
            continue
        shown, by, what = _ENTRY.match(line).groups()
        declared.append(Name(shown, kind, run, what, by))
    NAMES.extend(declared)
    return tuple(n.name for n in declared)


# -- a training run's tags -----------------------------------------------------------------------------------
(
    ARCH,
    OPTIMIZER,
    SPLIT_PROTOCOL,
    DATASET_FINGERPRINT,
    DATA_DIR,
    N_IMAGES,
    N_TRAIN,
    N_VAL,
    N_TEST,
    N_TRAIN_SUBJECTS,
    N_VAL_SUBJECTS,
    N_TEST_SUBJECTS,
    SKIPPED,
    SKIPPED_PREFIX,
    TEST_SET,
    SELECTION_ON_TEST,
    TEST_ONE_CLASS,
    TEST_ONE_CLASS_PREDICTED,
    TEST_ONE_CLASS_PREDICTED_EPOCHS,
    TEST_ONE_CLASS_PREDICTED_CLASS,
    WARNING_FLAT_LOSS,
    MODEL_EPOCH,
    BEST_EPOCH,
    STOPPED_EPOCH,
    MILESTONES_NOT_REACHED,
    STOPPED_EARLY,
    TEST_CI_RESAMPLED,
    TEST_CI_DRAWS,
    KERAS_BACKEND,
    KERAS_VERSION,
    TENSORFLOW_VERSION,
    DEVICE,
    GIT_COMMIT,
    HEARTBEAT,
    CHECKPOINT_SLOT,
    CHECKPOINT_EPOCH,
    RESUMED_FROM_EPOCH,
    ERROR_BEFORE_RESUME,
    ERROR,
    REGISTERED_VERSIONS,
    STUDY_NAME,
    TRIAL_NUMBER,
    RETRY_OF,
    CV_FOLD,
    PROTOCOL,
) = _declare(
    "tag",
    "training",
    """
arch (tracking.writer): the architecture, also as a tag for the UI's columns
optimizer (tracking.writer): the optimizer, also as a tag for the UI's columns
split_protocol (tracking.writer): `image`, `subject`, `fold`, `kfold` or `official`: how the test split
    was drawn
dataset_fingerprint (tracking.sink): the content hash of the data (equal fingerprints, equal bytes)
data_dir (tracking.sink): the data folder
n_images (tracking.sink): cells in the dataset
n_train (tracking.sink): cells on the training side
n_val (tracking.sink): cells on the validation side
n_test (tracking.sink): cells on the test side
n_train_subjects (tracking.sink): subjects (patients) on the training side
n_val_subjects (tracking.sink): subjects on the validation side
n_test_subjects (tracking.sink): subjects on the test side
skipped (data.discovery): files the data left out, in all
skipped_<reason> (data.discovery): files the data left out for one reason (`skipped_bad_label`, ...)
test_set (tracking.sink): a hash of the dataset's fingerprint and the test side's cells: runs with one
    `test_set` were tested on the same cells (promote ranks only among them)
selection_on_test (tracking.sink): `true` when no validation split exists and epochs or settings were
    chosen on the test split (the paper's protocol): its test metrics are optimistic
test_one_class (tracking.sink): `true` when the test split holds one class only (AUC undefined)
test_one_class_predicted (tracking.sink): `true` when the model predicted one class for every test cell
    at some milestone
test_one_class_predicted_epochs (tracking.sink): those milestones, comma-separated
test_one_class_predicted_class (tracking.sink): the class (`ALL`, `hem`) it predicted, comma-separated
warning_flat_loss (tracking.sink): the training loss did not move from epoch 2 to 5; the text names the
    likely causes
model_epoch (tracking.writer): the epoch the logged model is from
best_epoch (tracking.writer): the epoch with the best validation accuracy (with a validation split)
stopped_epoch (tracking.writer): the epoch where `--early-stopping` ended the run
milestones_not_reached (tracking.writer): the milestones an early stop never reached, or `none`
stopped_early (tracking.writer): why the run was stopped early (it ends KILLED)
test_ci_resampled (tracking.sink): what the intervals resampled: `subjects`, or `cells` when the split
    knows no subjects
test_ci_draws (tracking.sink): how many bootstrap draws the intervals took
keras_backend (tracking.writer): the Keras backend (`tensorflow`, `jax`, `torch`)
keras_version (tracking.writer): the Keras version
tensorflow_version (tracking.writer): the TensorFlow version, or `not installed`
device (tracking.writer): `CPU` or the accelerator's name
git_commit (tracking.writer): the checkout's commit, when leukml runs from a git checkout
heartbeat (tracking.heartbeat): the time of the last heartbeat (seconds since the epoch): a RUNNING run
    whose heartbeat is old has lost its process
checkpoint_path (tracking.sink): the complete checkpoint's slot, `checkpoint/a` or `checkpoint/b`
checkpoint_epoch (tracking.sink): the epoch of the complete checkpoint
resumed_from_epoch (tracking.recovery): a continued run: the epochs it resumed from, comma-separated
error_before_resume (tracking.recovery): a continued run: the failure before it resumed
error (tracking.writer, tracking.heartbeat, tracking.recovery): why a FAILED run failed (a lost process too)
registered_versions (serving.registry): `name/version` of each promotion of this run, comma-separated
study_name (experiments.search): a search's trial: its study (also on the search's parent run)
trial_number (experiments.search): a search's trial: its number in the study
retry_of (experiments.search): a search's trial that retries a dead worker's cell: the number of the
    trial it retries
cv_fold (`leukml cv`): a cross-validation fold (under its `leukml_cv` parent)
protocol (`leukml protocols`): the protocol of a `leukml protocols` child run
""",
)
# -- a training run's params beyond its options --------------------------------------------------------------
(EXPERIMENT, MILESTONES, TAKEOVER_CLAIM, RESUME_CLAIM) = _declare(
    "param",
    "training",
    """
experiment (tracking.writer): the experiment the run was asked into
milestones (tracking.writer): the epochs evaluated on the test split, comma-separated (`eval_epochs` and
    always the last)
takeover.<time> (tracking.heartbeat): a resume took over a RUNNING run whose heartbeat was `<time>`: the
    host and process that did
resume.<time> (tracking.heartbeat): a resume claimed a FAILED or KILLED run that ended at `<time>`: the
    host and process that did
""",
)
# -- a search's parent run -----------------------------------------------------------------------------------
(SEARCH_PARENT, _, SEARCH_MODE, STUDY_PARENT_RUNS, BEST_RUN_ID) = _declare(
    "tag",
    "search",
    """
leukml_search (`leukml search`): `true`: a search's parent run
study_name (`leukml search`): the study's name
search_mode (`leukml search`): `grid` or `extended`
study_parent_runs (tracking.recovery): every worker's parent run of the study, comma-separated
best_run_id (tracking.writer): the trial run with the best objective
""",
)
# -- a cross-validation's parent run -------------------------------------------------------------------------
(CV_PARENT, CV_FOLDS) = _declare(
    "tag",
    "cv",
    """
leukml_cv (`leukml cv`): `true`: a cross-validation's parent run
cv_folds (`leukml cv`): the folds asked for
""",
)
# -- a protocols comparison's parent run ---------------------------------------------------------------------
(PROTOCOLS_PARENT,) = _declare(
    "tag",
    "protocols",
    """
leukml_protocols (`leukml protocols`): `true`: a protocols comparison's parent run
""",
)
# -- a promotion's run, nested under the training run it promotes --------------------------------------------
(PROMOTION, SOURCE_RUN_ID, REGISTERED_MODEL) = _declare(
    "tag",
    "promotion",
    """
leukml_promotion (serving.registry): `true`: the run that holds a promoted image classifier
source_run_id (serving.registry): the training run it promotes (also its parent)
registered_model (serving.registry): the registered model's name
""",
)
# -- its params: the classifier's config, read by serving.pyfunc from the model ------------------------------
_declare(
    "param",
    "promotion",
    """
model_version (serving.registry): the version it was registered as
tta (serving.registry): `none` or `dihedral`: the classifier's test-time augmentation
temperature (serving.registry): the temperature it divides logits by (1.0: uncalibrated)
keras_backend (serving.registry): the Keras backend it loads with
""",
)
# -- the registered version's tags ---------------------------------------------------------------------------
(
    VERSION_RUN_ID,
    METRIC,
    METRIC_VALUE,
    _,
    _,
    _,
    _,
    _,
    TTA,
    RANKED_PROTOCOL,
    RANKED_TEST_SET,
    RANKED_RUNS,
    METRIC_CI_LOW,
    METRIC_CI_HIGH,
    RUNNER_UP_RUN_ID,
    RUNNER_UP_DIFFERENCE,
    RUNNER_UP_DIFFERENCE_CI,
    DISTINGUISHABLE_FROM_RUNNER_UP,
) = _declare(
    "tag",
    "version",
    """
run_id (serving.registry): the training run the version's model comes from
metric (serving.registry): the metric the run was chosen on
metric_value (serving.registry): its value
arch (serving.registry): the training run's `arch` param
dataset_fingerprint (serving.registry): the training run's tag of that name
split_protocol (serving.registry): the training run's tag of that name
selection_on_test (serving.registry): the training run's tag of that name
n_test (serving.registry): the training run's tag of that name
tta (serving.registry): `none` or `dihedral`: whether the classifier averages 8 variants
ranked_protocol (serving.registry): the protocol it was ranked within, or `mixed`
ranked_test_set (serving.registry): the test set it was ranked on, or `mixed`
ranked_runs (serving.registry): how many runs it was ranked against
metric_ci_low (serving.registry): the metric's 95% interval, low end
metric_ci_high (serving.registry): the metric's 95% interval, high end
runner_up_run_id (serving.registry): the ranking's second run
runner_up_difference (serving.registry): the chosen run's value minus the runner-up's
runner_up_difference_ci (serving.registry): that difference's paired 95% interval, `low,high`
distinguishable_from_runner_up (serving.registry): `true` when that interval leaves out 0
""",
)
# -- a training run's artifacts ------------------------------------------------------------------------------
(
    MODEL,
    CONFIG_JSON,
    SPLIT_MANIFEST,
    CURVES,
    CHECKPOINT,
    CONFUSION_MATRIX,
    PER_SUBJECT,
    PREDICTIONS,
    RELIABILITY,
) = _declare(
    "artifact",
    "training",
    """
model (tracking.writer): the logged Keras model (raw 0-255 RGB in, `[p_hem, p_all]` out), with its
    signature, input example and the metrics of its epoch
config.json (tracking.sink): every option of the run, as `leukml train --resume` reads them back
split_manifest.json (tracking.sink): the data folder, its fingerprint and each split side's files
curves.png (tracking.writer): loss and accuracy per epoch
checkpoint/a, checkpoint/b (tracking.sink): the two checkpoint slots (only in runs long enough to write
    one; older runs wrote one, `checkpoint`)
confusion_matrix/epoch_NNN.png (tracking.sink): each milestone's confusion matrix, `.png` and `.json`
    (epoch, labels, matrix, metrics)
per_subject/epoch_NNN.csv (tracking.sink): each milestone's accuracy per test subject, `.csv`
    (`subject`, `class`, `cells`, `accuracy`, `mean_p_all`) and `.png`
predictions/epoch_NNN.csv (tracking.sink): each milestone's per-image test predictions (`file`,
    `subject`, `label`, `p_all`; label 1 = ALL; with calibration also `p_all_uncalibrated`): every
    metric can be recomputed from it
reliability/epoch_NNN.png (tracking.sink): each milestone's reliability diagram
""",
)
# -- a search parent's artifacts -----------------------------------------------------------------------------
(TRIALS_CSV, STUDY_FOLDER, REPORT_FOLDER) = _declare(
    "artifact",
    "search",
    """
trials.csv (tracking.writer): one row per trial of the study
study/ (tracking.writer): Optuna's figures, and `README.txt` saying why any is missing
report/ (`leukml report`): the report of the runs, when one was written
""",
)
# -- a cross-validation parent's artifacts -------------------------------------------------------------------
(CV_FOLDS_CSV,) = _declare(
    "artifact",
    "cv",
    """
cv_folds.csv (`leukml cv`): one row per fold at its last milestone
""",
)


# MLflow's own parent-run tag (``mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID``), for the layers
# that do not import MLflow; MLflow documents it, so it is not in NAMES
PARENT_RUN_ID = "mlflow.parentRunId"
SIDE_CELLS = {"train": N_TRAIN, "val": N_VAL, "test": N_TEST}  # a split side's count tags
SIDE_SUBJECTS = {"train": N_TRAIN_SUBJECTS, "val": N_VAL_SUBJECTS, "test": N_TEST_SUBJECTS}
CHECKPOINT_SLOTS = (f"{CHECKPOINT}/a", f"{CHECKPOINT}/b")  # older leukml wrote one, in CHECKPOINT
BASE_PREFIX = "base."  # a plan's training option shared by its runs, as the parent's param
# runs that are no training: a parent run (which under `mlflow run` also holds every option as a
# param) and a promotion's run
NOT_TRAINING = (SEARCH_PARENT, CV_PARENT, PROTOCOLS_PARENT, PROMOTION)


def epoch_artifact(folder: str, epoch: int, extension: str = "") -> str:
    """A milestone's artifact: ``FOLDER/epoch_NNN.EXT`` (``predictions/epoch_010.csv``), or its
    stem without ``extension``."""
    stem = f"{folder}/epoch_{epoch:03d}"
    return f"{stem}.{extension}" if extension else stem


def skipped_tag(kind: str) -> str:
    """The tag counting the files skipped for one kind of reason (already a word: ``bad_label``)."""
    return SKIPPED_PREFIX + kind


def warning_tag(name: str) -> str:
    """The tag of a model warning the training loop found (``flat_loss`` -> ``WARNING_FLAT_LOSS``)."""
    return f"warning_{name}"


def split_protocol_of(params: dict[str, str], tags: dict[str, str]) -> str:
    """A run's split protocol: its ``split`` param (the option), else (runs older than that param)
    its ``split_protocol`` tag, else ``?``."""
    return params.get("split") or tags.get(SPLIT_PROTOCOL) or "?"


def test_set_of(params: dict[str, str], tags: dict[str, str]) -> str:
    """A run's test set: its ``test_set`` tag, or for a run that predates it, what decided the test
    side (dataset, split and its options) as text."""
    if TEST_SET in tags:
        return tags[TEST_SET]
    keys = ("split", "seed", "test_fraction", "test_fold", "folds")
    return ":".join([tags.get(DATASET_FINGERPRINT, "?"), *(params.get(k, "") for k in keys)])


def is_training(params: dict[str, str], tags: dict[str, str]) -> bool:
    """Whether a run is one training (its params are one configuration), not a parent or a
    promotion."""
    return ARCH in params and not any(tags.get(t) == "true" for t in NOT_TRAINING)


def names(kind: str, run: str | None = None) -> set[str]:
    """Every name of a ``kind`` declared (carried by one ``run`` kind), a pattern by its fixed
    part (``skipped_``), two names shown together each (``checkpoint/a``, ``checkpoint/b``)."""
    return {
        re.split(r"[<]", shown)[0]
        for n in NAMES
        if n.kind == kind and run in (None, n.run)
        for shown in n.shown.split(", ")
    }
