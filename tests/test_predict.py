"""`leukml predict`: natural file order and the challenge CSV (the model is faked here; the real one
runs in test_registry_serving.py)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import LEUKML

from leukml.cli import main
from leukml.cli.errors import one_line
from leukml.serving import predict as lib


def _touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # collect_images goes by the name only
    return root


def test_folders_are_read_in_natural_order_named_relative_to_the_folder(tmp_path):
    numbered = [f"{k}.bmp" for k in (12, 1, 100, 10, 2, 11, 3)]
    _touch(tmp_path, *numbered, "notes.txt", ".hidden.bmp", "fold_10/1.bmp", "fold_2/10.bmp", "fold_2/9.bmp")
    found = lib.collect_images([tmp_path])
    assert [name for _, name in found] == [
        "1.bmp",
        "2.bmp",
        "3.bmp",
        "10.bmp",
        "11.bmp",
        "12.bmp",
        "100.bmp",
        "fold_2/9.bmp",
        "fold_2/10.bmp",
        "fold_10/1.bmp",
    ]
    assert all(path == tmp_path / name for path, name in found)
    given = tmp_path / "2.bmp"
    assert lib.collect_images([given]) == [(given, str(given))]  # a file keeps the name it was given


def _fake_table(names: list[str], scale: int = 100) -> pd.DataFrame:
    """What the pyfunc returns; p_all from the file's number, so a row out of place shows."""
    p_all = [int(Path(n).stem) / scale for n in names]
    labels = ["ALL" if p > 0.5 else "hem" for p in p_all]
    return pd.DataFrame({"label": labels, "p_all": p_all, "model_version": "1"})


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_has_challenge_labels_in_the_order_given(tmp_path):
    names = ["1.bmp", "2.bmp", "60.bmp", "99.bmp"]
    lib.write_csv(tmp_path / "out.csv", names, _fake_table(names))
    rows = _read(tmp_path / "out.csv")
    assert [list(r.values()) for r in rows] == [
        ["1.bmp", "0", "0.01"],
        ["2.bmp", "0", "0.02"],
        ["60.bmp", "1", "0.6"],
        ["99.bmp", "1", "0.99"],
    ]
    with pytest.raises(ValueError, match=r"label\(s\) \['blast'\]; expected ALL or hem"):
        lib.write_csv(tmp_path / "x.csv", ["1.bmp"], pd.DataFrame({"label": ["blast"], "p_all": [0.9]}))


def test_csv_target_is_checked_before_predicting(tmp_path):
    existing = tmp_path / "old.csv"
    existing.write_text("kept\n")
    lib.check_csv(existing, ["1.bmp"])
    lib.check_csv(tmp_path / "new.csv", ["1.bmp"])
    assert existing.read_text() == "kept\n" and not (tmp_path / "new.csv").exists()
    nowhere = tmp_path / "nope" / "out.csv"
    with pytest.raises(OSError) as missing:
        lib.check_csv(nowhere, ["1.bmp"])
    assert one_line(missing.value, {}) == f"{nowhere}: No such file or directory; check the path"
    with pytest.raises(OSError) as folder:
        lib.check_csv(tmp_path, ["1.bmp"])
    assert one_line(folder.value, {}).endswith("Is a directory; give a file, not a folder")
    with pytest.raises(ValueError, match="1.bmp is found twice"):
        lib.check_csv(tmp_path / "out.csv", ["1.bmp", "2.bmp", "1.bmp"])


@pytest.mark.parametrize("source", ["--model-uri", "--url"])
def test_cli_writes_the_csv_with_either_source(source, tmp_path, monkeypatch):
    called = []

    def fake(where: str, images: list[Path], *tracking_uri) -> pd.DataFrame:
        called.append(where)
        return _fake_table([p.name for p in images], scale=12)

    monkeypatch.setattr(lib, "predict_with_model" if source == "--model-uri" else "predict_with_server", fake)
    folder = _touch(tmp_path / "test", *(f"{k}.bmp" for k in range(1, 13)))
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["predict", str(folder), source, "somewhere", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote 12 predictions (6 ALL, 6 hem) to {out}\n"
    rows = _read(out)
    assert [r["file"] for r in rows] == [f"{k}.bmp" for k in range(1, 13)]
    assert [float(r["p_all"]) for r in rows] == [k / 12 for k in range(1, 13)]
    assert [r["label"] for r in rows] == ["0"] * 6 + ["1"] * 6

    called.clear()
    nowhere = tmp_path / "nope" / "out.csv"
    result = CliRunner().invoke(main, ["predict", str(folder), source, "x", "--csv", str(nowhere)])
    assert result.exit_code == 1 and not called  # refused before the model or server is asked
    assert result.output == f"Error: {nowhere}: No such file or directory; check the path\n"


@pytest.mark.parametrize("failure", ["undecodable image", "missing model"])
@pytest.mark.slow
def test_a_failed_prediction_leaves_an_existing_csv_as_it_was(failure, tmp_path, tiny_data, child_env):
    images = tmp_path / "images"
    images.mkdir()
    for cell in sorted(tiny_data.rglob("*.bmp"))[:2]:
        shutil.copy(cell, images / cell.name)
    if failure == "undecodable image":
        (images / "3.bmp").write_bytes(b"not an image")
    out = tmp_path / "out.csv"
    before = b"file,label,p_all\r\n1.bmp,1,0.9\r\n"  # yesterday's predictions
    out.write_bytes(before)
    model = tmp_path / "no-model"  # a model folder that is not there
    done = subprocess.run(
        [str(LEUKML), "predict", str(images), "--csv", str(out), "--model-uri", str(model)],
        env=child_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"),  # made by no one
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    expected = (
        "3.bmp: not a readable image" if failure == "undecodable image" else f"model '{model}' not found"
    )
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr and done.stdout == ""
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out.csv"]  # nothing else written


def test_gif_and_eps_are_refused_by_predict_and_the_served_model(tmp_path):
    """Only BMP, PNG, JPEG and TIFF are decoded: a GIF and an EPS (Pillow would hand it to
    Ghostscript) get a message naming the file and the format, from `leukml predict` before any
    model loads, and from the served model's decoding (the pyfunc's 'row N')."""
    import base64
    import io

    from PIL import Image

    from leukml.data.images import decode_base64_batch

    out = io.BytesIO()
    picture = Image.new("RGB", (64, 64))
    picture.paste((200, 40, 120), (0, 0, 30, 30))
    picture.save(out, format="GIF")
    gif = tmp_path / "cell.gif"
    gif.write_bytes(out.getvalue())
    eps = tmp_path / "cell.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n")
    for path, kind in ((gif, "a GIF file"), (eps, "a PostScript (EPS) file")):
        result = CliRunner().invoke(main, ["predict", str(path), "--model-uri", "models:/none@x"])
        assert result.exit_code == 1
        assert result.output == (
            f"Error: {path}: not a readable image: {kind}; only BMP, PNG, JPEG and TIFF are read; "
            "give BMP, PNG, JPEG or TIFF images of single cells\n"
        )
        with pytest.raises(ValueError) as served:
            decode_base64_batch([base64.b64encode(path.read_bytes()).decode()], 32)
        assert str(served.value) == (
            f"row 0: not a usable image: not a readable image: {kind}; only BMP, PNG, JPEG and TIFF are read"
        )
