"""The architectures and the model options: the registry of bases and what each option means.

No Keras here (``leukml.model.networks`` builds the networks), so the command line can read the options'
definitions without loading a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leukml.common.errors import OptionError
from leukml.common.options import option

POOLINGS = ("flatten", "avg")


@dataclass(frozen=True)
class Arch:
    constructor: str  # the keras.applications class (resolved by leukml.model.networks)
    preprocess: str  # keras.applications preprocess_input mode: caffe, torch, tf, or none
    min_size: int = 32


ARCHS: dict[str, Arch] = {
    "vgg16": Arch("VGG16", "caffe"),
    "resnet50": Arch("ResNet50", "caffe"),
    "mobilenetv2": Arch("MobileNetV2", "tf"),
    "efficientnetb0": Arch("EfficientNetB0", "none"),  # rescales inside itself
    "densenet121": Arch("DenseNet121", "torch"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and head. ``weights``: ``imagenet``, ``none`` or a Keras weights file path."""

    arch: str = option("vgg16", "The frozen base.", choices=tuple(ARCHS), set_by=("search",))
    weights: str = option("imagenet", "imagenet, none, or a path to a Keras weights file for the base.")
    image_size: int = option(224, "Image side in pixels (images are resized to it).")
    pooling: str = option("flatten", "How the base's feature map meets the head.", choices=POOLINGS)
    dense_units: int = option(512, "Units of the head's hidden Dense layer.")
    dropout: float = option(0.0, "Dropout before the head's output layer.")

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise OptionError(f"arch={self.arch!r}; choose one of: {', '.join(ARCHS)}")
        if self.pooling not in POOLINGS:
            raise OptionError(f"pooling={self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if self.image_size < ARCHS[self.arch].min_size:
            raise OptionError(
                f"image_size={self.image_size}; {self.arch} needs at least {ARCHS[self.arch].min_size} pixels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise OptionError(f"dropout={self.dropout}; use 0 <= dropout < 1")
        if self.dense_units < 1:
            raise OptionError(f"dense_units={self.dense_units}; use a positive number")


@dataclass(frozen=True)
class Weights:
    """What a ``weights`` option means: ``imagenet`` (Keras' download), ``none`` (random init), or
    a Keras weights file. The one place the option is interpreted."""

    kind: str  # imagenet, none or file
    path: Path | None = None

    @property
    def key(self) -> tuple:
        """Identifies the weights a base is built with: a file rewritten in place is other weights."""
        if self.path is None or not self.path.is_file():
            return (self.kind, self.path)
        info = self.path.stat()
        return (self.kind, self.path, info.st_mtime_ns, info.st_size)


def resolve_weights(weights: str) -> Weights:
    """``"imagenet"`` / ``"none"`` / a path (``~`` expanded) as a ``Weights``."""
    if weights in ("imagenet", "none"):
        return Weights(weights)
    return Weights("file", Path(weights).expanduser())
