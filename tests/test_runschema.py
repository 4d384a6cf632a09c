"""The run schema is the one place a run's names are spelled: a tag name as a string anywhere else in
``leukml/`` fails here, naming the file and line; search filters are built by ``runfilter`` only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mlflow
import pytest
from helpers import mlflow_store
from mlflow.tracking import MlflowClient

from leukml.common import runschema as schema
from leukml.common.runfilter import quoted, tag_is, where
from leukml.tracking import recovery

ROOT = Path(__file__).resolve().parents[1] / "leukml"
SCHEMA = {"common/runschema.py"}
FILTERS = {"common/runfilter.py"}
# tag names that are ordinary keys elsewhere, flagged only where they are used as a tag: option
# fields and Optuna params (arch, optimizer), Optuna user attributes (error, retry_of), CLI options
# (study_name, heartbeat), the inspect report's and the summaries' keys (skipped, data_dir, n_images),
# the checkpoint's JSON (best_epoch, stopped_epoch), the classifier's config (keras_backend, tta),
# MLflow's logged-model field (source_run_id) and plain words (metric, run_id, device, protocol)
ORDINARY = {
    "arch", "optimizer", "error", "retry_of", "study_name", "heartbeat", "skipped", "data_dir",
    "n_images", "best_epoch", "stopped_epoch", "keras_backend", "tta", "source_run_id", "metric",
    "run_id", "device", "protocol",
}  # fmt: skip
# a filter clause on a tag or param: to be built with leukml.common.runfilter
CLAUSE = re.compile(r"\b(tags|params)\.[`\"\w]")
# the artifacts' file names, which say nothing else
FILES = {n.shown for n in schema.NAMES if n.kind == "artifact" and "." in n.shown and "/" not in n.shown}
TAG_CALLS = {"set_tag", "delete_tag", "set_model_version_tag", "_set_tag_racing"}


def _is_tags(node: ast.AST) -> bool:
    """An expression that reads as a run's tags (``tags``, ``run.data.tags``, ``info.tags``)."""
    return ast.unparse(node).endswith("tags")


def _as_tag(node: ast.Constant, parent: ast.AST, grandparent: ast.AST | None) -> bool:
    """Whether the string ``node`` is used as a tag's name where it stands."""
    if isinstance(parent, ast.Subscript):
        return parent.slice is node and _is_tags(parent.value)
    if isinstance(parent, ast.Compare):
        return parent.left is node and _is_tags(parent.comparators[0])
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute):
        attr, owner = parent.func.attr, parent.func.value
        return (attr in ("get", "pop", "setdefault") and _is_tags(owner)) or attr in TAG_CALLS
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name):
        return parent.func.id in TAG_CALLS
    if isinstance(parent, ast.Dict) and node in parent.keys:
        if isinstance(grandparent, ast.Assign):
            return any(_is_tags(t) for t in grandparent.targets)
        return isinstance(grandparent, ast.keyword) and grandparent.arg == "tags"
    return False


def _spelled_names(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: 'name'`` for each run name spelled as a string in ``path``."""
    tags = schema.names("tag")
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    where_ = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        value, parent = node.value, parents.get(node)
        bad = value in FILES or (where_ not in FILTERS and CLAUSE.search(value))
        if value in tags:
            bad = bad or value not in ORDINARY or _as_tag(node, parent, parents.get(parent))
        if bad:
            found.append(f"{where_}:{node.lineno}: {value!r}")
    return found


def test_run_names_are_spelled_in_the_schema_only():
    found = [
        hit
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in SCHEMA
        for hit in _spelled_names(path)
    ]
    assert not found, (
        "tag names, artifact files or search filters spelled outside leukml/common/runschema.py "
        f"(use its constants, and leukml.common.runfilter for filters): {found}"
    )


def test_the_scan_sees_a_tag_name_where_it_is_used_as_one(tmp_path):
    """The check itself: each way a name is spelled as a tag is found, a word that is no tag is not."""
    source = tmp_path / "module.py"
    source.write_text(
        "tags = {'model_epoch': 1, 'arch': 'vgg16'}\n"  # 1, 1
        "run.data.tags.get('error')\n"  # 2
        "'cv_fold' in tags\n"  # 3
        "client.set_tag(run_id, 'heartbeat', '1')\n"  # 4
        "query = \"tags.study_name = 'x'\"\n"  # 5
        "log_dict(config, 'config.json')\n"  # 6
        "options = {'arch': 'vgg16', 'error': None}\n"  # an option and a key: no tags
        "print('test_accuracy')\n"
    )
    found = [hit.split(": ", 1)[1] for hit in _spelled_names(source, tmp_path)]
    names = ["'model_epoch'", "'arch'", "'error'", "'cv_fold'", "'heartbeat'", "\"tags.study_name = 'x'\""]
    assert sorted(found) == sorted([*names, "'config.json'"])


def test_every_name_is_declared_once_with_its_meaning_and_writer():
    seen = [(n.shown, n.kind, n.run) for n in schema.NAMES]
    assert len(seen) == len(set(seen))
    assert all(n.run in schema.RUNS and n.what and n.by for n in schema.NAMES)


def test_filter_values_are_quoted_the_one_way():
    assert quoted("cells") == "'cells'" and quoted("o'neil") == '"o\'neil"'
    assert where(tag_is(schema.STUDY_NAME, "a"), "", "params.arch != ''") == (
        "tags.study_name = 'a' and params.arch != ''"
    )


def test_a_dead_workers_trial_run_is_found_when_its_study_name_holds_a_quote(tmp_path):
    """A retried cell marks the lost worker's trial run FAILED, also in a study named ``o'neil``."""
    mlflow.set_tracking_uri(mlflow_store(tmp_path))
    mlflow.set_experiment("quoted")
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name("quoted").experiment_id
    tags = {schema.STUDY_NAME: "o'neil", schema.TRIAL_NUMBER: "3"}
    lost = client.create_run(experiment, tags=tags).info.run_id
    with mlflow.start_run():
        assert recovery.fail_orphaned_trial_runs("o'neil", "3") == [lost]
    run = client.get_run(lost)
    assert run.info.status == "FAILED" and run.data.tags[schema.ERROR].startswith("worker lost")


def test_leukmls_experiment_is_the_one_whose_runs_say_their_split_protocol(tmp_path, monkeypatch):
    """Without --experiment, the reader picks the one experiment holding leukml training runs,
    found by their ``split_protocol`` tag (runs of any leukml version carry it); others are not."""
    from leukml.tracking.reader import find_experiment

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    client = MlflowClient(mlflow_store(tmp_path))
    other = client.create_experiment("other")
    client.create_run(other, tags={"stage": "etl"})
    leukml = client.create_experiment("old-leukml")
    client.create_run(leukml, tags={schema.SPLIT_PROTOCOL: "image"})
    assert find_experiment(client, None).name == "old-leukml"
    client.create_run(other, tags={schema.SPLIT_PROTOCOL: "subject"})
    with pytest.raises(ValueError, match="in 2 experiments"):
        find_experiment(client, None)


def test_the_runs_reference_lists_every_declared_name(runs_reference):
    """The tables of docs/reference/runs.md are made from the schema: each name it declares is there."""
    missing = [
        f"{n.kind} {shown} of a {n.run} run"
        for n in schema.NAMES
        for shown in n.shown.split(", ")
        if f"`{shown}`" not in runs_reference
    ]
    assert not missing, f"declared in leukml/common/runschema.py but not on the runs reference: {missing}"


# constants whose name is not their value's (``config.json`` is CONFIG_JSON by the rule)
RENAMED = {
    "CHECKPOINT_SLOT": "checkpoint_path", "SEARCH_PARENT": "leukml_search", "CV_PARENT": "leukml_cv",
    "PROTOCOLS_PARENT": "leukml_protocols", "PROMOTION": "leukml_promotion", "VERSION_RUN_ID": "run_id",
    "SKIPPED_PREFIX": "skipped_", "TAKEOVER_CLAIM": "takeover.", "RESUME_CLAIM": "resume.",
    "SPLIT_MANIFEST": "split_manifest.json", "CURVES": "curves.png", "STUDY_FOLDER": "study",
    "REPORT_FOLDER": "report",
}  # fmt: skip


def test_each_constant_holds_the_name_of_its_own_line():
    """The constants are unpacked from the tables in order: one line out of place gives a constant
    another name, which this catches."""
    declared = {n.name for n in schema.NAMES}
    constants = {
        k: v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str) and v in declared
    }
    wrong = {
        k: v
        for k, v in constants.items()
        if re.sub(r"\W", "_", RENAMED.get(k, k.lower())) != re.sub(r"\W", "_", v)
    }
    assert len(constants) > 80 and not wrong, wrong
