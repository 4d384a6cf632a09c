"""``python -m leukml``: the `leukml` command."""

from leukml.cli import main

if __name__ == "__main__":
    main(prog_name="leukml")
