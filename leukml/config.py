"""The resolved configuration of one training run: every CLI option, validated, logged whole."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from leukml.models import ModelConfig
from leukml.runtime import auto_precision
from leukml.splits import SplitConfig

PAPER_MILESTONES = (10, 20, 30, 40, 50, 60, 80, 100)
# name -> keras.optimizers class; the one table of optimizers.
OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}
# auto: mixed_bfloat16 on an accelerator with native bfloat16, else float32 (runtime.auto_precision)
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# auto: Keras' own choice (XLA on GPU/TPU when the model supports it, not on a CPU-only machine)
JIT_MODES = ("auto", "true", "false")


def parse_epochs(text: str) -> tuple[int, ...]:
    """``"10,20,30"`` -> ``(10, 20, 30)``; empty -> ``()`` (the default milestones)."""
    try:
        return tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ValueError(f"eval_epochs={text!r}; give comma-separated epochs, e.g. 10,20,30") from None


@dataclass(frozen=True)
class TrainConfig:
    """One training run; the paper's values are the defaults. ``data_dir`` empty = embedded data."""

    data_dir: str = ""
    arch: str = "vgg16"
    optimizer: str = "adam"
    epochs: int = 100
    eval_epochs: tuple[int, ...] = field(default=())
    lr: float = 1e-4
    batch_size: int = 32
    decay_steps: int = 900
    decay_rate: float = 0.95
    image_size: int = 224
    weights: str = "imagenet"
    pooling: str = "flatten"
    dense_units: int = 512
    dropout: float = 0.0
    class_weight: bool = False
    split: str = "image"
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    test_fold: int | None = None
    seed: int = 42
    strict: bool = False
    feature_cache: bool = True
    precision: str = "auto"
    jit: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs}; use at least 1")
        bad = [e for e in self.eval_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"eval_epochs {bad} outside 1..epochs ({self.epochs})")
        for name, allowed in (("precision", PRECISIONS), ("jit", JIT_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of: {', '.join(allowed)}")
        for name in ("lr", "batch_size", "decay_steps", "decay_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}; use a positive value")
        self.model_config()  # validates arch, pooling, size, dropout
        self.split_config()

    @property
    def milestones(self) -> tuple[int, ...]:
        """Epochs evaluated on the test split: the given or paper's ones <= epochs, and the last."""
        chosen = self.eval_epochs or tuple(m for m in PAPER_MILESTONES if m <= self.epochs)
        return tuple(sorted(set(chosen) | {self.epochs}))

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            arch=self.arch,
            weights=self.weights,
            image_size=self.image_size,
            pooling=self.pooling,
            dense_units=self.dense_units,
            dropout=self.dropout,
        )

    def split_config(self) -> SplitConfig:
        return SplitConfig(
            method=self.split,
            test_fraction=self.test_fraction,
            val_fraction=self.val_fraction,
            test_fold=self.test_fold,
            seed=self.seed,
        )

    @property
    def requests_validation(self) -> bool:
        """A validation split is asked for: a request only. Whether a run selected on test is a
        fact of the split actually made, ``Split.selection_on_test``; ``split_records`` refuses a
        requested validation split that comes out empty, so the two agree for a run that trains."""
        return self.val_fraction > 0

    @property
    def resolved_precision(self) -> str:
        """The Keras dtype policy the run uses: ``precision``, with ``auto`` decided by the device."""
        return auto_precision() if self.precision == "auto" else self.precision

    @property
    def jit_compile(self) -> bool | str:
        """``compile(jit_compile=...)``: True, False, or ``"auto"`` (Keras' default)."""
        return {"true": True, "false": False}.get(self.jit, "auto")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["eval_epochs"] = ",".join(map(str, self.milestones))
        out["precision"] = self.resolved_precision
        return out
