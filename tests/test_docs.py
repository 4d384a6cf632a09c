"""The docs: every option says what it does, the generated reference lists every flag of every
command, and the site builds with no broken link (``mkdocs build --strict``)."""

from __future__ import annotations

import os
import re
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


def test_one_page_documents_every_command(hooks):
    """The commands reference is generated for every command there is: none can be left out."""
    page = (DOCS / "reference" / "commands.md").read_text()
    assert hooks.GENERATED.search(page) and "<!-- commands -->" in page
    rendered = hooks.render(page)
    for name in COMMANDS:
        assert f"## `leukml {name}`\n" in rendered, f"leukml {name} missing from the commands reference"
    for entry in ("main", "search", "promote", "app"):
        assert f"| `{entry}` |" in rendered  # the MLproject's entry points


def test_every_leukml_variable_is_documented_with_its_default(hooks):
    """Every LEUKML_* name the code reads is on the environment page, and only those."""
    used = {
        name
        for path in (ROOT / "leukml").rglob("*.py")
        for name in re.findall(r"\bLEUKML_[A-Z_]+\b", path.read_text())
    }
    documented = {name for name, _, _ in hooks.ENVIRONMENT}
    assert used == documented, (
        f"read but not documented: {sorted(used - documented)}; documented but never read: "
        f"{sorted(documented - used)} (docs/hooks.py ENVIRONMENT)"
    )
    rendered = hooks.render((DOCS / "reference" / "environment.md").read_text())
    from leukml.tracking.sink import METRIC_FLUSH_S

    assert f"| `LEUKML_METRIC_FLUSH_S` | `{METRIC_FLUSH_S}` |" in rendered  # the code's default


def test_search_space_is_read_from_suggest(hooks):
    table = hooks.search_space_reference()
    assert "| `lr` | `1e-05` to `0.01`, log-uniform |" in table
    assert "| `fine_tune_layers` | `0` \\| `2` \\| `4` |" in table


TRACKED_TEXT = [
    p
    for p in [*DOCS.rglob("*"), *(ROOT / "bench").glob("*.md"), ROOT / "README.md"]
    if p.is_file() and p.suffix in (".md", ".py", ".css", ".yml")
]


@pytest.mark.parametrize("path", TRACKED_TEXT, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_hold_no_issue_numbers_nor_paths_outside_the_project(path):
    text = path.read_text()
    assert not re.search(r"(?i)\bissues? ?#?\d+", text), re.search(r"(?i).{40}\bissues? ?#?\d+.{20}", text)
    # a folder above the checkout, by absolute path or by climbing out of it, or the home folder
    above = [re.escape(f"{folder}/") for folder in (ROOT.parent, Path.home()) if str(folder) != "/"]
    outside = re.compile("|".join([r"(?<![.\w])\.\./", *above]))
    found = outside.search(text)
    assert found is None, f"{path.name} names {text[found.start() : found.end() + 30]!r}, outside the project"


BLOCKING = re.compile(
    r"mlflow models serve|leukml app\b|mlflow ui\b|mlflow server\b|make docs|docker compose up"
)


@pytest.mark.parametrize("path", TRACKED_TEXT, ids=lambda p: str(p.relative_to(ROOT)))
def test_command_blocks_can_be_pasted(path):
    """A command that runs until Ctrl-C ends its block (nothing after it would run), and no block
    uses GNU-only flags (``base64 -w0``)."""
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", path.read_text(), re.S):
        assert "base64 -w" not in block, block
        commands = [line for line in block.splitlines() if line.strip() and not line.startswith((" ", "#"))]
        blocking = [i for i, line in enumerate(commands) if BLOCKING.search(line.split("#")[0])]
        assert not blocking or blocking == [len(commands) - 1], f"{path.name}: {block}"


def test_the_site_has_sections_and_a_short_readme():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    sections = [item for item in nav if isinstance(next(iter(item.values())), list)]
    assert len(sections) >= 3
    assert {"Get started", "How-to", "Reference", "Concepts"} <= {next(iter(s)) for s in sections}
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


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


@pytest.mark.slow
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
    commands = (site / "reference" / "commands" / "index.html").read_text()
    assert "<code>--fine-tune-layers</code>" in commands  # the generated reference is there
    assert "latest headline" in (site / "benchmarks" / "index.html").read_text()
