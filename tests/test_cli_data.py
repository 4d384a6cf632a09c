from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from leukml.cli import main


def test_inspect_real_sample_json(real_sample):
    result = CliRunner().invoke(main, ["inspect", str(real_sample), "--split", "subject", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_images"] == 310
    assert report["classes"] == {"all": 154, "hem": 156}
    assert len(report["subjects"]["all"]) == 11
    assert report["subjects"]["hem"] == ["H10", "H14", "H22"]
    assert report["skipped"] == []
    splits = report["splits"]
    assert sum(s["n_images"] for s in splits.values()) == 310
    assert not set(splits["train"]["subjects"]["hem"]) & set(splits["test"]["subjects"]["hem"])


def test_inspect_text_and_synth(tmp_path):
    runner = CliRunner()
    out = tmp_path / "syn"
    result = runner.invoke(
        main, ["synth", str(out), "--n-all", "8", "--n-hem", "4", "--subjects", "4", "--size", "24"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["inspect", str(out), "--split", "fold"])
    assert result.exit_code == 0, result.output
    assert "12 images" in result.output and "split fold" in result.output


def test_inspect_refuses_splits_that_cannot_work(tmp_path):
    """`inspect` splits with the training code, so it says what `train` would say."""
    for cls in ("all", "hem"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / cls / f"cell{i}.png")
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(tmp_path), "--split", "subject"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "8 of 8 images have no subject id" in result.output and "use --split image" in result.output
    result = runner.invoke(main, ["inspect", str(tmp_path), "--split", "image", "--test-fraction", "0.01"])
    assert result.exit_code == 1
    assert "--test-fraction 0.01 gave no test images" in result.output and "at least 0.13" in result.output
    result = runner.invoke(main, ["inspect", str(tmp_path), "--split", "image", "--test-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert "no validation images: per-epoch validation would use test" in result.output
