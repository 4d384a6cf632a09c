"""What the installed `leukml` command does with each kind of failure: an error leukml worded
(``LeukmlError``) is one line without a traceback; anything else, a ``ValueError`` of numpy or Keras
included, is a bug: its traceback stays, followed by one line asking to report it.

The real script runs in a subprocess, its library failing where a test chooses (sitecustomize on
PYTHONPATH replaces the function `leukml synth` calls): Click's CliRunner would catch the
exception itself, and the traceback would never show."""

from __future__ import annotations

import pickle

import pytest
from helpers import error_line, run_leukml

from leukml.cli.errors import REPORT_BUG, one_line
from leukml.common.errors import LeukmlError, OptionError

FAULT = """
import leukml.data.synth
from leukml.common.errors import LeukmlError


def write_synthetic(out, config):
    {raise_it}


leukml.data.synth.write_synthetic = write_synthetic
"""
WORDED = "the synthetic cells cannot be written there: choose another folder"
BUGS = {  # what the library raises -> the traceback's last line
    "valueerror": ('raise ValueError("boom")', "ValueError: boom"),
    "keyerror": ("raise KeyError('size')", "KeyError: 'size'"),
    "worded-over-a-bug": (
        'try:\n        {}["size"]\n    except KeyError as exc:\n'
        '        raise LeukmlError("the size is missing") from exc',
        "leukml.common.errors.LeukmlError: the size is missing",
    ),
}


def _synth_raising(raise_it: str, tmp_path, child_env):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAULT.format(raise_it=raise_it))
    return run_leukml(["synth", "out"], child_env(PYTHONPATH=str(site)), tmp_path, timeout=120)


def test_a_worded_error_is_one_line_without_traceback(tmp_path, child_env):
    proc = _synth_raising(f"raise LeukmlError({WORDED!r})", tmp_path, child_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert error_line(proc.stderr) == f"Error: {WORDED}"


@pytest.mark.parametrize("case", list(BUGS))
def test_an_error_leukml_did_not_word_keeps_its_traceback_and_asks_for_a_report(case, tmp_path, child_env):
    raise_it, last = BUGS[case]
    proc = _synth_raising(raise_it, tmp_path, child_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):", proc.stderr[-3000:]
    assert 'sitecustomize.py", line' in proc.stderr and "in write_synthetic" in proc.stderr, proc.stderr
    assert lines[-2:] == [last, REPORT_BUG], proc.stderr[-3000:]
    assert not any(line.startswith("Error: ") for line in lines), proc.stderr[-3000:]
    if case == "worded-over-a-bug":  # the bug under the words shows too
        assert "KeyError: 'size'" in proc.stderr and "direct cause" in proc.stderr


def test_an_option_error_names_the_commands_flag():
    """The library names the option by its field; the CLI spells it as the command's flag, and
    leaves it as the field where the command has no such option."""
    error = OptionError("image_size=20; vgg16 needs at least 32 pixels")
    assert one_line(error, {"image_size": 20}) == "--image-size 20; vgg16 needs at least 32 pixels"
    assert one_line(error, {}) == "image_size=20; vgg16 needs at least 32 pixels"
    copy = pickle.loads(pickle.dumps(error))  # a search's worker hands it back whole
    assert (copy.option, str(copy)) == (error.option, str(error))
    assert isinstance(error, LeukmlError) and isinstance(error, ValueError)
    with pytest.raises(TypeError):  # the library names the option by its field, not its flag
        OptionError("--image-size 20; vgg16 needs at least 32 pixels")
    assert one_line(ValueError("boom"), {}) is None
