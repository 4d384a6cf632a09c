"""The errors leukml words for its users.

Every failure that leukml explains (a bad option value, data it cannot use, a run it cannot
resume) is a ``LeukmlError``, whose message names the input, what is wrong and what to do. The
CLI prints such an error as one line; any other exception, a ``ValueError`` of numpy or Keras
included, is a bug and keeps its traceback. ``LeukmlError`` is a ``ValueError``, so callers that
catch ``ValueError`` keep working.
"""

from __future__ import annotations

import re


class LeukmlError(ValueError):
    """A failure leukml words for its user: the message says it all, in one line."""


class OptionError(LeukmlError):
    """A value of one option that cannot work. The message starts with the option's name as a
    config field and its value, ``image_size=20; ...``; the CLI spells the option as the command's
    flag (``--image-size 20; ...``)."""

    def __init__(self, message: str) -> None:
        if not re.match(r"[a-z]\w*=", message):
            raise TypeError(f"an OptionError's message starts with option=VALUE, not {message[:40]!r}")
        super().__init__(message)

    @property
    def option(self) -> str:
        """The option's name, as its config field is spelt (``image_size``)."""
        return str(self).split("=", 1)[0]
