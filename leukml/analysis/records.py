"""A tracked run as plain data: what the report, the comparison and the run reader share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunRecord:
    """One finished training run as plain data."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    curves: dict[str, dict[int, float]]  # metric -> {epoch: value}

    @property
    def cell(self) -> tuple[str, str]:
        return self.params.get("arch", "?"), self.params.get("optimizer", "?")

    @property
    def milestones(self) -> list[int]:
        return sorted(self.curves.get("test_accuracy", {}))
