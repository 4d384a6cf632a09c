"""A training's data, prepared: the dataset discovered, split as configured, its images decoded
(cached). The type every later step of a training reads (inputs, the loop, the result)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leukml.common.console import Progress, silent
from leukml.data.discovery import Dataset, discover
from leukml.data.imagecache import load_images
from leukml.data.splits import Split, split_records
from leukml.data.synth import embedded_dataset
from leukml.training.config import TrainConfig


@dataclass
class Prepared:
    dataset: Dataset
    split: Split
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped


def check_split(config: TrainConfig, progress: Progress = silent) -> tuple[Dataset, Split]:
    """Discover and split ``config.data_dir`` as ``config`` says, loading no image (a search calls
    it once before its first trial, since every trial would fail the same way).

    Raises:
        ValueError: the split cannot work (``split_records``), naming the option to change.
    """
    dataset = discover(config.data_dir or embedded_dataset(), strict=config.strict, progress=progress)
    return dataset, split_records(dataset.records, config.split)


def prepare_data(config: TrainConfig, progress: Progress = silent) -> Prepared:
    """Discover, split and load (cached) the images of ``config.data_dir``; ``progress`` hears of
    the long steps."""
    dataset, split = check_split(config, progress)
    return Prepared(dataset, split, load_images(dataset, config.model.image_size, progress=progress))
