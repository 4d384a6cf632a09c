"""A tracked run as plain data: what the report, the comparison, promotion and the run reader share.

Readers ask a run what they need through its accessors, which know the tags' names
(``leukml.common.runschema``) and how runs of older leukml versions wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leukml.common import runschema as schema


@dataclass
class RunRecord:
    """One tracked run as plain data."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {epoch: value}

    @classmethod
    def of(cls, run) -> RunRecord:
        """The record of an MLflow run (``mlflow.entities.Run``), without its curves."""
        return cls(run.info.run_id, dict(run.data.params), dict(run.data.tags))

    @property
    def cell(self) -> tuple[str, str]:
        return self.params.get(schema.ARCH, "?"), self.params.get(schema.OPTIMIZER, "?")

    @property
    def milestones(self) -> list[int]:
        return sorted(self.curves.get("test_accuracy", {}))

    @property
    def is_training(self) -> bool:
        """One training (its params are one configuration), not a parent run or a promotion."""
        return schema.is_training(self.params, self.tags)

    @property
    def split_protocol(self) -> str:
        """``image``, ``subject``, ``official``, ``fold`` or ``kfold`` (``?``: not said)."""
        return schema.split_protocol_of(self.params, self.tags)

    @property
    def test_set(self) -> str:
        """The test set it was tested on (``runschema.test_set_of``)."""
        return schema.test_set_of(self.params, self.tags)

    @property
    def dataset_fingerprint(self) -> str:
        return self.tag(schema.DATASET_FINGERPRINT)

    @property
    def cv_fold(self) -> str | None:
        """The fold of a cross-validation's training, None for any other run."""
        return self.tags.get(schema.CV_FOLD)

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get(schema.PARENT_RUN_ID)

    def tag(self, name: str, default: str = "?") -> str:
        """A tag as written (a count such as ``N_TEST``, a fact such as ``SELECTION_ON_TEST``),
        ``default`` when the run did not write it (an older run)."""
        return self.tags.get(name, default)

    @property
    def n_images(self) -> int:
        return int(self.tags.get(schema.N_IMAGES, "0") or 0)

    @property
    def test_one_class(self) -> bool:
        return self.tags.get(schema.TEST_ONE_CLASS) == "true"

    @property
    def one_class_predicted(self) -> OneClass | None:
        """Where the model predicted one class for every test cell, None if it never did."""
        epochs = self.tags.get(schema.TEST_ONE_CLASS_PREDICTED_EPOCHS, "")
        if not epochs and self.tags.get(schema.TEST_ONE_CLASS_PREDICTED) != "true":
            return None
        return OneClass([e for e in epochs.split(",") if e], self.tag(schema.TEST_ONE_CLASS_PREDICTED_CLASS))

    @property
    def model_epoch(self) -> str | None:
        """The epoch its logged model is from (as written), None before it logged one."""
        return self.tags.get(schema.MODEL_EPOCH)


@dataclass(frozen=True)
class OneClass:
    """The milestones at which a model predicted one class for every test cell (as written), and
    the class or classes (comma-separated; ``?`` when not said)."""

    epochs: list[str]
    label: str
