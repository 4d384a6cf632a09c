"""A checkpoint in memory (``Snapshot``), as the loop takes it when an epoch ends and a sink stores
it: plain arrays and text, below the loop and the sinks that hand it on (``leukml.training.checkpoint``
takes and loads them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATE_FILE, ARRAYS_FILE = "state.json", "arrays.npz"


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint in memory, taken as epoch ``epoch`` ended: ``write`` puts it into a folder."""

    epoch: int
    meta: str  # state.json's text
    arrays: dict[str, np.ndarray]

    def write(self, folder: Path) -> Path:
        """The checkpoint folder (made if missing) with both files."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / ARRAYS_FILE, **self.arrays)
        (folder / STATE_FILE).write_text(self.meta)
        return folder
