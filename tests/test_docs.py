"""The docs: every option says what it does, the generated reference lists every flag of every
command, and the site builds with no broken link (``mkdocs build --strict``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from leukml.cli import main
from leukml.common.options import options_of
from leukml.experiments.config import SearchConfig
from leukml.experiments.protocols import CvConfig
from leukml.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMANDS = sorted(main.commands)


def _options(name: str) -> list[click.Option]:
    return [p for p in main.commands[name].params if isinstance(p, click.Option)]


@pytest.fixture(scope="module")
def hooks():
    """``docs/hooks.py``, the module that generates the reference when the site is built."""
    spec = importlib.util.spec_from_file_location("leukml_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", [TrainConfig, SearchConfig, CvConfig])
def test_every_declared_option_has_help(config):
    missing = [o.flag for o in options_of(config) if not o.help.strip()]
    assert not missing, (
        f"{config.__name__}: {', '.join(missing)} declared without help; "
        "give option(default, help) a help text (it is the flag's --help and its row in the docs)"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_has_help(hooks, name):
    missing = [p.opts[0] for p in _options(name) if not hooks.help_and_default(p)[0].strip()]
    assert not missing, f"leukml {name}: {', '.join(missing)} without help text"


@pytest.mark.parametrize("name", COMMANDS)
def test_reference_lists_every_flag_with_its_default(hooks, name):
    table = hooks.options_table(name)
    assert table.startswith(f"```text\nleukml {name} ")
    for p in _options(name):
        row = next((line for line in table.splitlines() if line.startswith(f"| `{p.opts[0]}`")), None)
        assert row is not None, f"{p.opts[0]} missing from the reference of leukml {name}"
        plain = isinstance(p.default, int | float | str) and not isinstance(p.default, bool)
        if p.show_default and plain and str(p.default):
            assert f"`{p.default}`" in row, row


def test_every_command_has_a_reference_page(hooks):
    marked = {m.group(1) for page in DOCS.glob("*.md") for m in hooks.OPTIONS.finditer(page.read_text())}
    assert marked <= set(COMMANDS), f"markers for no command: {sorted(marked - set(COMMANDS))}"
    assert set(COMMANDS) <= marked, (
        f"commands without a reference in docs/: {sorted(set(COMMANDS) - marked)}; "
        "put <!-- options:NAME --> on the page they belong to"
    )


def test_beyond_lists_only_what_differs(hooks):
    table = hooks.options_table("search", beyond="train")
    assert "`--mode`" in table and "`--lr`" not in table
    assert "except `--arch`, `--optimizer` and `--resume`." in table


def test_unknown_command_fails_the_build(hooks):
    with pytest.raises(Exception, match="no such leukml command"):
        hooks.render("<!-- options:trian -->\n")


def test_include_drops_the_title_and_nests_sections(hooks, tmp_path, monkeypatch):
    (tmp_path / "notes.md").write_text("# Title\n\n## Section\n\n```bash\n# a comment\n```\n")
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    out = hooks.render("# Page\n\n<!-- include:notes.md -->\n")
    assert "# Title" not in out
    assert "### Section" in out
    assert "\n# a comment\n" in out  # code is left alone


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    training = (site / "training" / "index.html").read_text()
    assert "<code>--fine-tune-layers</code>" in training  # the generated reference is there
    assert "Measured results" in (site / "benchmarks" / "index.html").read_text()
