"""The report: provenance, the protocols side by side (the leakage gap), CV folds as mean ± std,
the published numbers as theirs, a self-contained HTML page, and the paper's tables on image splits."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import mlflow_store
from mlflow.tracking import MlflowClient

from leukml.analysis.comparison import (
    Candidate,
    by_configuration,
    protocol_entries,
    protocol_table,
    rank_like_with_like,
)
from leukml.analysis.leakage import protocols_section, summary_section
from leukml.analysis.page import Table
from leukml.analysis.report import (
    RunRecord,
    figure9_figure,
    pick_runs,
    provenance,
    rpf_tables,
    train_tables,
    write_report,
)
from leukml.reference import paper
from leukml.tracking.reader import fetch_runs, find_experiment


def _run(run_id: str, arch: str, fingerprint: str) -> RunRecord:
    tags = {"dataset_fingerprint": fingerprint, "n_images": "10661", "split_protocol": "image"}
    return RunRecord(run_id, {"arch": arch, "optimizer": "adam"}, tags, {"test_accuracy": {10: 0.8}})


def test_runs_on_different_datasets_are_flagged_as_not_comparable():
    same = provenance(pick_runs([_run("a", "vgg16", "f1"), _run("b", "resnet50", "f1")]))
    assert not any("NOT comparable" in line for line in same)
    other = provenance(pick_runs([_run("a", "vgg16", "f1"), _run("b", "resnet50", "f2")]))
    assert other[-1].startswith("NOT comparable with each other: these runs saw 2 different datasets")
    assert "f1, f2" in other[-1]


def _trained(
    run_id: str,
    split: str,
    accuracy: float,
    *,
    counts: tuple[int, int, int, int] = (40, 50, 5, 5),  # tp, tn, fp, fn
    tags: dict[str, str] | None = None,
    **params: str,
) -> RunRecord:
    """A run of vgg16 + adam (unless ``params`` say otherwise) with every test metric at epochs 10, 20."""
    curves = {
        "train_accuracy": {10: 0.85, 20: 0.9},
        "test_accuracy": {10: accuracy - 0.05, 20: accuracy},
        "test_f1_weighted": {20: accuracy - 0.01},
        "test_balanced_accuracy": {20: accuracy - 0.02},
        "test_sensitivity": {20: 0.9},
        "test_specificity": {20: 0.7},
        "test_auc": {20: 0.93},
        **{f"test_{k}": {20: float(v)} for k, v in zip(("tp", "tn", "fp", "fn"), counts, strict=True)},
    }
    base = {"arch": "vgg16", "optimizer": "adam", "lr": "0.0001", "epochs": "20", "seed": "42"}
    sizes = {"n_train": "80", "n_train_subjects": "8", "n_test": "20", "n_test_subjects": "2"}
    tags = {
        "dataset_fingerprint": "fp",
        "n_images": "10661",
        "split_protocol": split,
        **sizes,
        **(tags or {}),
    }
    return RunRecord(run_id, {**base, "split": split, **params}, tags, curves)


def _fold(run_id: str, fold: int, accuracy: float, parent: str = "cvparent", split: str = "kfold", **kw):
    tags = {"cv_fold": str(fold), "mlflow.parentRunId": parent}
    return _trained(run_id, split, accuracy, tags=tags, folds="5", test_fold=str(fold), **kw)


def _rows(table) -> dict[str, list[str]]:
    """A protocol table's rows by protocol (the first line of the first cell)."""
    return {row[0].split("\n")[0]: row for row in table.rows}


def test_one_configuration_is_shown_under_each_protocol_with_its_gap_to_the_image_split():
    runs = [
        _trained("s1", "subject", 0.61, test_fraction="0.25", data_dir="/data/a"),
        _trained("o1", "official", 0.66, seed="7", precision="mixed_bfloat16"),
        _trained("i1", "image", 0.87, val_fraction="0.1"),
        _trained("i0", "image", 0.50),  # older run of the same configuration and protocol
        _trained("x1", "image", 0.70, lr="0.001"),  # another configuration
    ]
    grouped = by_configuration(protocol_entries(runs))
    assert len(grouped) == 2
    same = next(entries for config, entries in grouped.items() if dict(config)["lr"] == "0.0001")
    rows = _rows(protocol_table("vgg16 + adam", same))
    assert list(rows) == ["image", "subject", "official"]
    assert rows["image"][0] == "image\nrun i1\ntrain 80 cells / 8 subjects, test 20 / 2"
    assert rows["image"][1] == "20"
    assert rows["image"][2:4] == ["0.8700", "0.8600"]  # test accuracy, weighted F1
    assert rows["subject"][2] == "0.6100\n\N{MINUS SIGN}0.2600 vs image"
    assert rows["official"][3] == "0.6500\n\N{MINUS SIGN}0.2100 vs image"
    assert rows["official"][7] == "0.9300\n+0.0000 vs image"  # AUC


def test_an_older_run_without_the_new_metrics_shows_a_dash():
    old = RunRecord(
        "old", {"arch": "vgg16", "optimizer": "adam", "split": "subject"}, {}, {"test_accuracy": {10: 0.7}}
    )
    (entries,) = by_configuration(protocol_entries([old])).values()
    (row,) = protocol_table("vgg16 + adam", entries).rows
    assert row[2] == "0.7000" and row[3:] == ["–"] * 5


def test_cv_fold_runs_are_one_protocol_entry_with_mean_and_std_over_the_folds():
    folds = [_fold(f"k{i}", i, 0.60 + 0.02 * i, counts=(40, 50, 5, 5)) for i in range(5)]
    official = [_fold(f"f{k}", k, 0.70, parent="cvofficial", split="fold") for k in (1, 2, 3)]
    rerun = _fold("k0-old", 0, 0.10)  # an older run of fold 0 under the same parent: not counted
    trial = _trained("t1", "subject", 0.5, tags={"mlflow.parentRunId": "search"})  # a search trial
    runs = [_trained("i1", "image", 0.87), *folds, *official, rerun, trial]
    (entries,) = by_configuration(protocol_entries(runs)).values()
    assert [e.protocol for e in entries] == [
        "image",
        "subject",
        "cv, official folds (fold)",
        "cv, 5 folds (kfold)",
    ]
    kfold = entries[-1]
    assert [r.run_id for r in kfold.runs] == ["k0", "k1", "k2", "k3", "k4"]
    rows = _rows(protocol_table("vgg16 + adam", entries))
    # accuracies 0.60..0.68: mean 0.64, population std sqrt(0.0008) = 0.0283
    assert rows["cv, 5 folds (kfold)"][2] == "0.6400 ± 0.0283\n\N{MINUS SIGN}0.2300 vs image"
    assert rows["cv, 5 folds (kfold)"][0] == (
        "cv, 5 folds (kfold)\n5 folds of cv run cvparent\ntest 100 cells over 5 folds"
    )
    assert rows["cv, official folds (fold)"][2].startswith("0.7000 ± 0.0000")
    assert np.array_equal(kfold.confusion(), [[250, 25], [25, 200]])  # [[tn, fp], [fn, tp]] summed


def _md_rows(md: str, first_cell: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_published_numbers_are_theirs_under_their_protocol(tmp_path):
    md = write_report([_trained("i1", "image", 0.87)], tmp_path, "t").read_text()
    assert "### Published numbers: theirs, under their protocol (not ours)" in md
    published = {
        (r[0], r[4]): r[2]
        for who in ("Pan", "Prellberg", "Mondal", "Marzahl", "Fata")
        for r in _md_rows(md, who)
    }
    prelim, final = "tested on the preliminary test set", "tested on the final test set"
    assert prelim in published["Pan et al. 2019", "0.925"] and final in published["Pan et al. 2019", "0.9104"]
    assert final in published["Prellberg & Kramer 2019", "0.8891"]
    assert prelim in published["Mondal et al. 2021", "0.886"]
    assert prelim in published["Marzahl et al.", "0.8764"]
    assert published["Fata et al. 2023 (the paper)", "0.8700"].startswith("image")
    assert published["Fata et al. 2023 (the paper)", "0.9380"].startswith("image")


def test_summary_names_the_best_configuration_under_image_beside_the_published_best():
    runs = [
        _trained("i1", "image", 0.87),
        _trained("s1", "subject", 0.61),
        _trained("r1", "image", 0.80, arch="resnet50", optimizer="rmsprop"),
        _trained("r2", "subject", 0.95, arch="resnet50", optimizer="rmsprop"),  # best only under subject
    ]
    summary = summary_section(protocol_entries(runs))
    assert summary.blocks[0].startswith(
        "Best configuration: vgg16 + adam, chosen as the highest test accuracy at its last milestone "
        "under the image protocol"
    )
    rows = summary.blocks[-1].rows
    assert [r[1:3] for r in rows[:2]] == [
        ["image", "0.8700"],
        ["subject", "0.6100\n\N{MINUS SIGN}0.2600 vs image"],
    ]
    assert (
        rows[2][0].startswith("theirs: Fata et al. 2023")
        and rows[2][1].startswith("image")
        and rows[2][2] == "0.8700"
    )
    assert rows[3][0].startswith("theirs: Pan et al. 2019") and "preliminary test set" in rows[3][1]
    assert rows[3][3] == "0.925"
    without_image = summary_section(protocol_entries(runs[1::2]))
    assert "vgg16" not in without_image.blocks[0] and "under the subject protocol" in without_image.blocks[0]


def test_html_is_one_self_contained_page_with_the_summary_and_a_confusion_matrix_per_configuration(tmp_path):
    runs = [
        _trained("i1", "image", 0.87),
        _trained("r1", "image", 0.80, arch="resnet50", optimizer="rmsprop", counts=(1, 2, 3, 4)),
    ]
    write_report(runs, tmp_path, "t")
    page = (tmp_path / "report.html").read_text()
    assert "<link" not in page and "<script" not in page and "http://" not in page and "https://" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG") for s in sources)
    assert "<style>" in page and "@media print" in page
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Protocols: the leakage gap</h2>")
    confusions = re.findall(r'alt="Confusion matrix, ([^:"]+):', page)
    assert confusions == ["vgg16 + adam", "resnet50 + rmsprop"]
    md = (tmp_path / "report.md").read_text()
    pngs = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert "figure9_test_accuracy.png" in pngs and len(pngs) == 3
    assert all((tmp_path / p).read_bytes().startswith(b"\x89PNG") for p in pngs)


def test_paper_tables_use_image_split_runs_and_name_another_protocol_when_they_must():
    runs = [
        _trained("s-new", "subject", 0.6),  # newest, but not the paper's protocol
        _trained("i-old", "image", 0.87),
        _fold("k2", 2, 0.6, arch="resnet50", optimizer="rmsprop"),  # only run of this cell
    ]
    cells = pick_runs(runs)
    assert cells["vgg16", "adam"].run_id == "i-old" and cells["resnet50", "rmsprop"].run_id == "k2"
    titles = [t.title for t in train_tables(cells)]
    assert titles == [
        "Train accuracy, vgg16 (paper Tables 1-2)",
        "Train accuracy, resnet50 (paper Tables 1-2) — rmsprop: kfold split, cv fold 2 (no image-split run)",
    ]
    lines = provenance(cells)
    assert "not the paper's image split" in lines[0] and "kfold split, cv fold 2" in lines[0]
    assert "not the paper's image split" not in lines[1]


@pytest.mark.parametrize("cell", [("vgg16", "adam"), ("resnet50", "rmsprop")])
def test_figure9_draws_the_papers_points_beside_ours_in_the_same_colour(cell):
    run = _trained("a", "image", 0.87, arch=cell[0], optimizer=cell[1])
    run.curves["test_accuracy"] = {e: 0.8 for e in paper.EPOCHS}
    lines = {line.get_label(): line for line in figure9_figure({cell: run}).axes[0].get_lines()}
    ours, theirs = lines[f"{cell[0]} + {cell[1]}"], lines[f"{cell[0]} + {cell[1]}, paper"]
    assert theirs.get_color() == ours.get_color() and theirs.get_linestyle() == "None"
    assert dict(zip(theirs.get_xdata(), theirs.get_ydata(), strict=True)) == paper.TEST_ACCURACY[cell]


def test_figure_file_names_are_short_and_stable_whatever_the_params(tmp_path):
    """Two configurations told apart by a long option (a weights file's path) once made a file name
    longer than the file system allows ("File name too long")."""
    long = "/data/" + "weights-of-a-base-fine-tuned-elsewhere/" * 8 + "vgg16.weights.h5"
    runs = [_trained("a", "image", 0.8, weights=long), _trained("b", "image", 0.7, weights=long + "x")]
    write_report(runs, tmp_path, "two configurations")
    names = sorted(p.name for p in tmp_path.glob("confusion_*.png"))
    assert len(names) == 2 and len(set(names)) == 2
    assert all(len(name) <= 80 for name in names), names
    write_report(runs, tmp_path / "again", "two configurations")
    assert sorted(p.name for p in (tmp_path / "again").glob("confusion_*.png")) == names


def test_a_configuration_is_its_training_options_only():
    """A param that is no training option (a pyfunc's model_config, which MLflow logged as params
    of the promoted run) does not split one configuration in two."""
    runs = [_trained("a", "image", 0.8, model_version="1"), _trained("b", "subject", 0.6)]
    grouped = by_configuration(protocol_entries(runs))
    assert len(grouped) == 1
    (entries,) = grouped.values()
    assert [e.protocol for e in entries] == ["image", "subject"]


def _candidate(run_id: str, protocol: str, value: float, test_set: str = "t1") -> Candidate:
    return Candidate(run_id, protocol, test_set, value)


def test_promotion_ranks_within_the_most_faithful_protocol_and_one_test_set():
    runs = [_candidate("img", "image", 0.95), _candidate("off", "official", 0.70, "p"),
            _candidate("off2", "official", 0.75, "p"), _candidate("sub", "subject", 0.80, "s")]  # fmt: skip
    ranking = rank_like_with_like(runs)
    assert (ranking.protocol, ranking.test_set) == ("official", "p")
    assert [c.run_id for c in ranking.runs] == ["off2", "off"]  # not the image run's 0.95
    assert "most faithful" in ranking.chosen_by
    assert rank_like_with_like(runs, "image").runs[0].run_id == "img"
    assert [c.run_id for c in rank_like_with_like(runs, "mixed").runs][:2] == ["img", "sub"]
    with pytest.raises(
        ValueError, match="--protocol kfold: no matching run .*present: official, subject, image"
    ):
        rank_like_with_like(runs, "kfold")
    other = [*runs, _candidate("off3", "official", 0.9, "another-test-set")]
    with pytest.raises(ValueError, match="2 different test sets .* --parent-run .* --protocol mixed"):
        rank_like_with_like(other)


def _test_set(tags: dict[str, str], params: dict[str, str]) -> str:
    return RunRecord("r", params, tags).test_set


def test_a_run_without_a_test_set_tag_is_known_by_its_data_and_split_options():
    old = _test_set({"dataset_fingerprint": "fp"}, {"split": "subject", "seed": "1", "test_fraction": "0.2"})
    assert old == _test_set(
        {"dataset_fingerprint": "fp"}, {"split": "subject", "seed": "1", "test_fraction": "0.2"}
    )
    assert old != _test_set(
        {"dataset_fingerprint": "fp"}, {"split": "subject", "seed": "2", "test_fraction": "0.2"}
    )
    assert _test_set({"test_set": "abc", "dataset_fingerprint": "fp"}, {}) == "abc"


def test_a_run_older_than_the_split_param_is_known_by_its_split_protocol_tag():
    assert RunRecord("r", {"split": "official"}, {"split_protocol": "image"}).split_protocol == "official"
    assert RunRecord("r", {}, {"split_protocol": "subject"}).split_protocol == "subject"
    assert RunRecord("r", {}, {}).split_protocol == "?"


@pytest.mark.slow
def test_report_over_a_whole_experiment_reads_its_trainings_only(tmp_path, child_env):
    """A cross-validation's, a protocols call's or a search's parent run (under `mlflow run` it holds
    every training option as a param) and a promotion's run are no configurations; the installed
    `leukml report`, given no experiment, finds the one that holds leukml's trainings."""
    uri = mlflow_store(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("lab")
    options = {
        "arch": "vgg16",
        "optimizer": "adam",
        "split": "image",
        **{f"option_{i}": "x" * 40 for i in range(40)},
    }
    made = {}
    for kind, tags in (
        ("training", {"split_protocol": "image", "dataset_fingerprint": "fp"}),
        ("cv", {"leukml_cv": "true"}),
        ("protocols", {"leukml_protocols": "true"}),
        ("search", {"leukml_search": "true"}),
        ("promotion", {"leukml_promotion": "true"}),
    ):
        run = client.create_run(exp, tags=tags, run_name=kind)
        for key, value in options.items():
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "test_accuracy", 0.8, step=2)
        client.set_terminated(run.info.run_id)
        made[kind] = run.info.run_id
    assert [r.run_id for r in fetch_runs("lab", tracking_uri=uri)] == [made["training"]]
    leukml = str(Path(sys.executable).parent / "leukml")
    done = subprocess.run(
        [leukml, "report", "--out", "r"],
        cwd=tmp_path,
        env=child_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "from 1 run(s)" in done.stdout
    assert (tmp_path / "r" / "report.md").read_text().startswith("# leukml report: experiment lab")


def test_readers_find_the_experiment_holding_leukml_runs_or_name_the_choices(tmp_path, monkeypatch):
    uri = mlflow_store(tmp_path)
    client = MlflowClient(uri)
    for name in ("Default-like", "lab", "team"):
        client.create_experiment(name)
    for name in ("lab", "team"):
        run = client.create_run(
            client.get_experiment_by_name(name).experiment_id, tags={"split_protocol": "image"}
        )
        client.set_terminated(run.info.run_id)
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        ValueError, match=r"2 experiments .*\('lab', 'team'\); choose one with --experiment NAME"
    ):
        find_experiment(client, None)
    assert find_experiment(client, "team").name == "team"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lab")  # as MLflow follows it
    assert find_experiment(client, None).name == "lab"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", client.get_experiment_by_name("team").experiment_id)
    assert find_experiment(client, None).name == "team"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    client.delete_experiment(client.get_experiment_by_name("team").experiment_id)
    assert find_experiment(client, None).name == "lab"
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        find_experiment(client, "nope")


def _rpf_run(run_id: str, arch: str, optimizer: str, recall, precision, f1) -> RunRecord:
    """An image-split run with milestones 10, 20, 30 and the given macro recall, precision, F1."""
    run = _trained(run_id, "image", 0.85, arch=arch, optimizer=optimizer, epochs="30")
    at = (10, 20, 30)
    curves = {
        **run.curves,
        "test_accuracy": {10: 0.80, 20: 0.82, 30: 0.85},
        "test_recall_macro": dict(zip(at, recall, strict=True)),
        "test_precision_macro": dict(zip(at, precision, strict=True)),
        "test_f1_macro": dict(zip(at, f1, strict=True)),
    }
    return RunRecord(run.run_id, run.params, run.tags, curves)


def test_recall_precision_f1_tables_show_ours_beside_the_papers_with_totals(tmp_path):
    runs = [
        _rpf_run("r", "resnet50", "adam", (0.60, 0.62, 0.64), (0.70, 0.71, 0.72), (0.65, 0.66, 0.67)),
        _rpf_run("v", "vgg16", "adam", (0.70, 0.75, 0.80), (0.80, 0.85, 0.90), (0.74, 0.79, 0.84)),
    ]
    vgg, resnet = rpf_tables(pick_runs(runs))  # the paper's order: vgg16 first
    assert vgg.title == "Recall, precision, F1 (macro), vgg16 + adam (paper Tables 3-6)"
    assert vgg.header == ["Epoch", "Recall", "paper", "Prec.", "paper", "F1", "paper"]
    # the paper's vgg16 + adam at 10, 20, 30: (0.76, 0.86, 0.79), (0.81, 0.84, 0.82), (0.82, 0.85, 0.82)
    assert vgg.rows == [
        ["10", "0.7000", "0.76", "0.8000", "0.86", "0.7400", "0.79"],
        ["20", "0.7500", "0.81", "0.8500", "0.84", "0.7900", "0.82"],
        ["30", "0.8000", "0.82", "0.9000", "0.85", "0.8400", "0.82"],
        ["Totals", "0.7500", "0.80", "0.8500", "0.85", "0.7900", "0.81"],  # the means of the rows above
    ]
    assert resnet.title == "Recall, precision, F1 (macro), resnet50 + adam (paper Tables 3-6)"
    # the paper's resnet50 + adam: (0.77, 0.77, 0.77), (0.75, 0.80, 0.76), (0.75, 0.80, 0.79)
    assert resnet.rows[-1] == ["Totals", "0.6200", "0.76", "0.7100", "0.79", "0.6600", "0.77"]
    assert [r[:3] for r in resnet.rows[:3]] == [
        ["10", "0.6000", "0.77"],
        ["20", "0.6200", "0.75"],
        ["30", "0.6400", "0.75"],
    ]
    md = write_report(runs, tmp_path, "t").read_text()
    assert "Recall, precision, F1 (macro), vgg16 + adam (paper Tables 3-6)" in md
    assert _md_rows(md, "Totals") == [vgg.rows[-1], resnet.rows[-1]]


def test_totals_average_both_sides_over_the_papers_epochs_only():
    # milestones 10, 20, 25: the paper reports 10 and 20, not 25 (vgg16 + adam recall 0.76, 0.81)
    base = _trained("v", "image", 0.85, epochs="25")
    at = (10, 20, 25)
    curves = {
        "test_accuracy": dict(zip(at, (0.8, 0.82, 0.5), strict=True)),
        "test_recall_macro": dict(zip(at, (0.70, 0.80, 0.10), strict=True)),
        "test_precision_macro": dict(zip(at, (0.80, 0.90, 0.10), strict=True)),
        "test_f1_macro": dict(zip(at, (0.74, 0.84, 0.10), strict=True)),
    }
    (table,) = rpf_tables(pick_runs([RunRecord("v", base.params, base.tags, curves)]))
    assert [r[0] for r in table.rows] == ["10", "20", "25", "Totals (epochs 10, 20)"]
    assert table.rows[-1][1:3] == ["0.7500", "0.79"]  # 25's 0.10 left out of ours, as of theirs


def _with_intervals(run: RunRecord, low: float, high: float, metric: str = "test_accuracy") -> RunRecord:
    run.curves |= {f"{metric}_ci_low": {20: low}, f"{metric}_ci_high": {20: high}}
    return run


def test_cells_carry_their_intervals_and_configurations_overlapping_the_best_are_marked():
    """Every single-run cell shows its logged 95% interval; the configurations whose test-accuracy
    interval overlaps the best one's (under its protocol) are named in the summary and marked in
    the protocol tables; one whose interval lies apart is not."""
    runs = [
        _with_intervals(_trained("i1", "image", 0.87), 0.80, 0.93),
        _with_intervals(_trained("r1", "image", 0.82, arch="resnet50"), 0.75, 0.88),  # overlaps
        _with_intervals(_trained("x1", "image", 0.55, lr="0.001"), 0.45, 0.65),  # apart
        _with_intervals(_trained("i0", "image", 0.87, epochs="30"), float("nan"), float("nan")),
    ]
    entries = protocol_entries(runs)
    summary = summary_section(entries)
    (note,) = [b for b in summary.blocks if isinstance(b, str) and "95% interval" in b]
    assert "[0.80, 0.93]" in note and "resnet50 + adam" in note and "lr=0.001" not in note
    assert summary.blocks[-1].rows[0][2] == "0.8700 [0.80, 0.93]"
    titles = [b.title for b in protocols_section(entries).blocks if isinstance(b, Table)]
    assert any(t.startswith("resnet50 + adam ≈ best:") for t in titles)
    assert not any("lr=0.001" in t and "≈ best" in t for t in titles)
    assert not any("epochs=30" in t and "≈ best" in t for t in titles)  # NaN: no interval, no mark
    rpf = _with_intervals(
        _rpf_run("v", "vgg16", "adam", (0.70, 0.75, 0.80), (0.80, 0.85, 0.90), (0.74, 0.79, 0.84)),
        0.61,
        0.79,
        "test_recall_macro",
    )
    (table,) = rpf_tables(pick_runs([rpf]))
    assert [row[1] for row in table.rows[:3]] == ["0.7000", "0.7500 [0.61, 0.79]", "0.8000"]  # logged at 20


def test_the_leakage_gap_carries_an_interval_of_two_independent_test_sets():
    """Image 0.87 [0.80, 0.93] vs subject 0.61 [0.40, 0.80]: the gap -0.26 gets Zou and Donner's
    interval, by hand: -0.26 - sqrt(0.21^2 + 0.06^2) = -0.478, -0.26 + sqrt(0.19^2 + 0.07^2) = -0.058."""
    runs = [
        _with_intervals(_trained("i1", "image", 0.87), 0.80, 0.93),
        _with_intervals(_trained("s1", "subject", 0.61), 0.40, 0.80),
    ]
    (entries,) = by_configuration(protocol_entries(runs)).values()
    rows = _rows(protocol_table("vgg16 + adam", entries))
    assert rows["subject"][2] == "0.6100 [0.40, 0.80]\n\N{MINUS SIGN}0.2600 vs image [-0.48, -0.06]"
    assert "subject 0.6100 (\N{MINUS SIGN}0.2600 vs image, 95% interval [-0.48, -0.06])" in "".join(
        b for b in summary_section(protocol_entries(runs)).blocks if isinstance(b, str)
    )
