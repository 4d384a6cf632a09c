"""The report's provenance: runs on other bytes are flagged as not comparable."""

from __future__ import annotations

from leukml.report import RunRecord, pick_runs, provenance


def _run(run_id: str, arch: str, fingerprint: str) -> RunRecord:
    tags = {"dataset_fingerprint": fingerprint, "n_images": "10661", "split_protocol": "image"}
    return RunRecord(run_id, {"arch": arch, "optimizer": "adam"}, tags, {"test_accuracy": {10: 0.8}})


def test_runs_on_different_datasets_are_flagged_as_not_comparable():
    same = provenance(pick_runs([_run("a", "vgg16", "f1"), _run("b", "resnet50", "f1")]))
    assert not any("NOT comparable" in line for line in same)
    other = provenance(pick_runs([_run("a", "vgg16", "f1"), _run("b", "resnet50", "f2")]))
    assert other[-1].startswith("NOT comparable with each other: these runs saw 2 different datasets")
    assert "f1, f2" in other[-1]
