"""The numbers Fata et al. (2023) report on C-NMC 2019, for side-by-side comparison.

Tables 1-2: train accuracy per epoch setting. Tables 3-6: recall, precision and F1 (their values
are consistent with macro averages over both classes, so they are compared with ``*_macro``).
Test accuracy is only given in the text and Figure 9 for a few settings.
"""

from __future__ import annotations

EPOCHS = (10, 20, 30, 40, 50, 60, 80, 100)
N_IMAGES = 10_661
ARCHS, OPTIMIZERS = ("vgg16", "resnet50"), ("adam", "rmsprop")
PROTOCOL = "image: their random 80/20 split by image (cells of one patient on both sides)"
BEST = ("vgg16", "adam", 100)  # their best: 93.80% train, 87.00% test accuracy

TRAIN_ACCURACY = {
    ("vgg16", "adam"): (0.8473, 0.8785, 0.8974, 0.8945, 0.9150, 0.9197, 0.9233, 0.9380),
    ("vgg16", "rmsprop"): (0.8436, 0.8649, 0.8772, 0.8683, 0.8983, 0.8969, 0.9165, 0.9275),
    ("resnet50", "adam"): (0.8008, 0.8087, 0.8107, 0.8097, 0.8114, 0.8119, 0.8160, 0.8163),
    ("resnet50", "rmsprop"): (0.8018, 0.8096, 0.8098, 0.8082, 0.8123, 0.8107, 0.8181, 0.8170),
}

# (recall, precision, f1) per epoch setting
RPF = {
    ("vgg16", "adam"): (
        (0.76, 0.86, 0.79),
        (0.81, 0.84, 0.82),
        (0.82, 0.85, 0.82),
        (0.79, 0.86, 0.82),
        (0.82, 0.84, 0.83),
        (0.81, 0.83, 0.82),
        (0.81, 0.87, 0.83),
        (0.81, 0.87, 0.84),
    ),
    ("vgg16", "rmsprop"): (
        (0.79, 0.81, 0.73),
        (0.79, 0.86, 0.82),
        (0.82, 0.84, 0.83),
        (0.77, 0.87, 0.80),
        (0.81, 0.85, 0.82),
        (0.79, 0.87, 0.82),
        (0.80, 0.85, 0.82),
        (0.80, 0.85, 0.82),
    ),
    ("resnet50", "adam"): (
        (0.77, 0.77, 0.77),
        (0.75, 0.80, 0.76),
        (0.75, 0.80, 0.79),
        (0.76, 0.79, 0.77),
        (0.76, 0.79, 0.77),
        (0.76, 0.79, 0.77),
        (0.76, 0.81, 0.78),
        (0.75, 0.81, 0.77),
    ),
    ("resnet50", "rmsprop"): (
        (0.72, 0.81, 0.74),
        (0.75, 0.79, 0.77),
        (0.74, 0.80, 0.76),
        (0.77, 0.79, 0.78),
        (0.76, 0.80, 0.77),
        (0.75, 0.80, 0.77),
        (0.75, 0.80, 0.77),
        (0.73, 0.81, 0.75),
    ),
}

TEST_ACCURACY = {  # from the text
    ("vgg16", "adam"): {10: 0.84, 20: 0.85, 100: 0.87},
    ("vgg16", "rmsprop"): {10: 0.84, 20: 0.86},
    ("resnet50", "rmsprop"): {80: 0.82},
}


def arch_order(arch: str) -> tuple[int, str]:
    """Sort key: the paper's architectures first, in its order, then the others by name."""
    return (ARCHS.index(arch) if arch in ARCHS else len(ARCHS), arch)


def train_accuracy(arch: str, optimizer: str, epoch: int) -> float | None:
    values = TRAIN_ACCURACY.get((arch, optimizer))
    return values[EPOCHS.index(epoch)] if values and epoch in EPOCHS else None


def rpf(arch: str, optimizer: str, epoch: int) -> tuple[float, float, float] | None:
    values = RPF.get((arch, optimizer))
    return values[EPOCHS.index(epoch)] if values and epoch in EPOCHS else None
