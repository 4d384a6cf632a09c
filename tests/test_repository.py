"""What lets anyone reuse and cite the repository: the licence, the citation, a clean checkout."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_licence_is_the_one_the_package_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_citation_names_the_software_the_paper_and_the_dataset():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "Apache-2.0"
    assert cff["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    refs = {r["doi"]: r for r in cff["references"]}
    paper = refs["10.18280/ria.370306"]
    assert [a["family-names"] for a in paper["authors"]] == ["Fata", "Irawati", "Hadiyoso"]
    assert paper["year"] == 2023
    assert refs["10.7937/tcia.2019.dc64i46r"]["type"] == "data"


def test_what_the_documented_commands_create_is_ignored():
    created = ["mlflow.db", "mlruns/x", "optuna.db", "report/report.md", "cells/all/1.bmp", ".venv/x"]
    created += ["build/site/index.html", "cell.bmp"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *created], cwd=ROOT, capture_output=True, text=True
    )
    assert sorted(ignored.stdout.split()) == sorted(created)
