from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukml.data.discovery import discover, parse_subject


def _cell(path: Path, mode: str = "RGB", size: int = 20, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (size, size, channels), dtype=np.uint8)
    Image.fromarray(arr.squeeze() if channels == 1 else arr, mode).save(path, format=fmt)
    return path


def test_subject_parsing_is_case_insensitive():
    assert parse_subject("UID_h3_2_1_hem.bmp") == "H3"
    assert parse_subject("UID_H10_43_1_hem.bmp") == "H10"
    assert parse_subject("uid_57_29_1_all.BMP") == "57"
    assert parse_subject("cell_001.png") is None


def test_cnmc_fold_layout_keeps_fold_and_subject(tmp_path):
    for fold in (0, 1):
        _cell(
            tmp_path
            / "C-NMC_Leukemia"
            / "training_data"
            / f"fold_{fold}"
            / "all"
            / f"UID_{fold + 1}_1_1_all.bmp"
        )
        _cell(
            tmp_path
            / "C-NMC_Leukemia"
            / "training_data"
            / f"fold_{fold}"
            / "hem"
            / f"UID_h{fold + 3}_1_1_hem.bmp"
        )
    ds = discover(tmp_path)
    assert len(ds) == 4
    assert {(r.fold, r.subject, r.label) for r in ds.records} == {
        (0, "1", 1),
        (0, "H3", 0),
        (1, "2", 1),
        (1, "H4", 0),
    }


@pytest.mark.parametrize("inside", [False, True])
def test_labelled_prelim_test_layout(tmp_path, inside):
    folder = tmp_path / "validation_data" / "C-NMC_test_prelim_phase_data"
    rows = [
        ("UID_57_29_1_all.bmp", "1.bmp", 1),
        ("UID_H24_1_1_hem.bmp", "2.bmp", 0),
        ("UID_58_3_1_all.bmp", "3.bmp", 1),
    ]
    for _, name, _ in rows:
        _cell(folder / name)
    csv_path = (folder if inside else folder.parent) / "C-NMC_test_prelim_phase_data_labels.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Patient_ID", "new_names", "labels"])
        writer.writerows(rows)
    ds = discover(tmp_path)
    assert sorted((Path(r.relpath).name, r.subject, r.label) for r in ds.records) == [
        ("1.bmp", "57", 1),
        ("2.bmp", "H24", 0),
        ("3.bmp", "58", 1),
    ]
    assert ds.skipped == ()


def test_plain_layout_any_case_formats_and_modes(tmp_path):
    _cell(tmp_path / "nested" / "ALL" / "a.PNG", fmt="PNG")
    _cell(tmp_path / "nested" / "ALL" / "b.jpeg", fmt="JPEG")
    _cell(tmp_path / "nested" / "Hem" / "c.TIF", mode="L", fmt="TIFF")
    _cell(tmp_path / "nested" / "Hem" / "d.png", mode="RGBA")
    (tmp_path / "nested" / "Hem" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "nested" / "Hem" / "notes.txt").write_text("not an image")
    ds = discover(tmp_path)
    assert [Path(r.relpath).name for r in ds.records] == ["a.PNG", "b.jpeg", "c.TIF", "d.png"]
    assert list(ds.labels) == [1, 1, 0, 0]
    assert ds.skipped == ()  # hidden files and non-images are ignored silently


def _bad_files(root: Path) -> None:
    good = _cell(root / "all" / "good.bmp")
    _cell(root / "hem" / "good.bmp")
    (root / "all" / "empty.bmp").write_bytes(b"")
    (root / "all" / "garbage.png").write_bytes(b"this is not a png at all")
    data = good.read_bytes()
    (root / "hem" / "truncated.bmp").write_bytes(data[: len(data) // 2])
    Image.new("L", (9000, 9000)).save(root / "hem" / "bomb.png")


def test_bad_images_are_skipped_with_reason(tmp_path):
    _bad_files(tmp_path)
    ds = discover(tmp_path)
    assert len(ds) == 2
    reasons = {s.path: s.reason for s in ds.skipped}
    assert "zero bytes" in reasons["all/empty.bmp"]
    assert "not a readable image" in reasons["all/garbage.png"]
    assert "truncated" in reasons["hem/truncated.bmp"]
    assert "decompression bomb" in reasons["hem/bomb.png"]


def test_strict_refuses_bad_images(tmp_path):
    _bad_files(tmp_path)
    with pytest.raises(ValueError, match="4 unusable image"):
        discover(tmp_path, strict=True)


def test_bad_inputs_name_the_folder_and_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*fold_<k>"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no usable labelled images under .*empty.*expected"):
        discover(tmp_path / "empty")
    _cell(tmp_path / "one" / "all" / "x.bmp")
    with pytest.raises(ValueError, match="only class 'all'.*both all and hem"):
        discover(tmp_path / "one")


def test_fingerprint_follows_content_not_location(tmp_path, tiny_data):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    assert discover(copy).fingerprint == discover(tiny_data).fingerprint
    # the same names and sizes, one image's pixels changed: only the content differs
    names_and_sizes = sorted((p.relative_to(copy), p.stat().st_size) for p in copy.rglob("*.bmp"))
    victim = next((copy / "C-NMC_Leukemia").rglob("*.bmp"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # the last pixel's last byte
    victim.write_bytes(bytes(data))
    assert sorted((p.relative_to(copy), p.stat().st_size) for p in copy.rglob("*.bmp")) == names_and_sizes
    assert discover(copy).fingerprint != discover(tiny_data).fingerprint


def test_real_sample(real_sample):
    ds = discover(real_sample)
    assert (int((ds.labels == 1).sum()), int((ds.labels == 0).sum())) == (154, 156)
    subjects = {(r.subject, r.label) for r in ds.records}
    assert len({s for s, label in subjects if label == 1}) == 11
    assert {s for s, label in subjects if label == 0} == {"H10", "H14", "H22"}
    assert {r.fold for r in ds.records} == {1}


def test_linked_class_and_fold_folders_are_followed_once(tmp_path):
    store = tmp_path / "store"
    _cell(store / "all_cells" / "UID_1_1_1_all.bmp")
    _cell(store / "hem_cells" / "UID_h2_1_1_hem.bmp")
    _cell(store / "fold" / "all" / "UID_3_1_1_all.bmp")
    _cell(store / "fold" / "hem" / "UID_h4_1_1_hem.bmp")
    data = tmp_path / "data"
    (data / "fold_0").mkdir(parents=True)
    (data / "fold_0" / "all").symlink_to(store / "all_cells")  # a linked class folder
    (data / "fold_0" / "hem").symlink_to(store / "hem_cells")
    (data / "fold_1").symlink_to(store / "fold")  # a linked fold folder
    (data / "fold_2").symlink_to(store / "fold")  # the same real folder again: read once
    (store / "fold" / "all" / "loop").symlink_to(data)  # a link loop back to the top
    ds = discover(data)
    assert [(r.relpath, r.fold, r.subject) for r in ds.records] == [
        ("fold_0/all/UID_1_1_1_all.bmp", 0, "1"),
        ("fold_0/hem/UID_h2_1_1_hem.bmp", 0, "H2"),
        ("fold_1/all/UID_3_1_1_all.bmp", 1, "3"),
        ("fold_1/hem/UID_h4_1_1_hem.bmp", 1, "H4"),
    ]


def test_a_real_folder_under_the_root_wins_over_a_link_to_it(tmp_path):
    _cell(tmp_path / "fold_0" / "all" / "UID_1_1_1_all.bmp")
    _cell(tmp_path / "fold_0" / "hem" / "UID_h1_1_1_hem.bmp")
    (tmp_path / "a_shortcut").symlink_to(tmp_path / "fold_0")  # sorts (and is walked) first
    ds = discover(tmp_path)
    assert [r.relpath for r in ds.records] == [
        "fold_0/all/UID_1_1_1_all.bmp",
        "fold_0/hem/UID_h1_1_1_hem.bmp",
    ]


def test_broken_and_looping_file_links_are_skipped_with_their_reason(tmp_path):
    _cell(tmp_path / "all" / "a.bmp")
    _cell(tmp_path / "hem" / "h.bmp")
    (tmp_path / "all" / "gone.bmp").symlink_to(tmp_path / "nowhere.bmp")
    (tmp_path / "hem" / "loop.bmp").symlink_to(tmp_path / "hem" / "loop.bmp")
    ds = discover(tmp_path)
    assert [r.relpath for r in ds.records] == ["all/a.bmp", "hem/h.bmp"]
    reasons = {s.path: s.reason for s in ds.skipped}
    assert reasons["all/gone.bmp"].startswith("broken symbolic link to ")
    assert reasons["hem/loop.bmp"] == "symbolic link loop"


def _prelim(folder: Path, rows: list[tuple[str, str, int]], *csv_names: str) -> None:
    for _, name, _ in rows:
        if not (folder / name).exists():
            _cell(folder / name)
    for csv_name in csv_names:
        with (folder / csv_name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Patient_ID", "new_names", "labels"])
            writer.writerows(rows)


def test_a_backup_copy_of_the_labels_csv_counts_each_image_once(tmp_path):
    rows = [("UID_57_29_1_all.bmp", "1.bmp", 1), ("UID_H24_1_1_hem.bmp", "2.bmp", 0)]
    _prelim(tmp_path, rows, "labels.csv", "labels (copy).csv")
    ds = discover(tmp_path)
    assert [(r.relpath, r.label) for r in ds.records] == [("1.bmp", 1), ("2.bmp", 0)]


def test_labels_csvs_that_disagree_are_refused_naming_both(tmp_path):
    rows = [("UID_57_29_1_all.bmp", "1.bmp", 1), ("UID_H24_1_1_hem.bmp", "2.bmp", 0)]
    _prelim(tmp_path, rows, "labels.csv")
    _prelim(tmp_path, [rows[0], ("UID_H24_1_1_hem.bmp", "2.bmp", 1)], "labels_old.csv")
    with pytest.raises(ValueError, match=r"2\.bmp is labelled '0' in labels\.csv but '1' in labels_old\.csv"):
        discover(tmp_path)


def test_when_every_file_is_skipped_the_error_gives_the_reasons(tmp_path):
    for i in range(3):
        _cell(tmp_path / "cells" / f"{i}.bmp")  # no class folder
    (tmp_path / "all").mkdir()
    (tmp_path / "all" / "gone.bmp").symlink_to(tmp_path / "nowhere.bmp")
    with pytest.raises(ValueError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "4 skipped: 3 unlabelled, 1 broken link" in message
    assert "cells/0.bmp: unlabelled" in message
