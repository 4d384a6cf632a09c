"""The `leukml` command line: options made from the configs (``options``), the commands (``data``,
``training``, ``results``) gathered in one group (``app``), one-line errors (``errors``), signals
(``signals``), and the ``MLproject`` file made from the commands (``mlproject``).

The top layer: may import every layer. Each command builds a config, calls one library function
and prints what it returns; workflows, tables and gaps live in the library.
"""

from leukml.cli.app import main

__all__ = ["main"]
