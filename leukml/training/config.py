"""The resolved configuration of one training run: every CLI option, validated, logged whole."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from leukml.common import options
from leukml.common.errors import LeukmlError, OptionError
from leukml.common.options import option, part
from leukml.data.splits import SPLIT_METHODS, SplitConfig
from leukml.model.archs import ModelConfig
from leukml.reference import paper
from leukml.training.recipe import RecipeConfig

# name -> keras.optimizers class; the one table of optimizers.
OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}
# auto: mixed_bfloat16 on an accelerator with native bfloat16, else float32 (runtime.auto_precision)
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# auto: Keras' own choice (XLA on GPU/TPU when the model supports it, not on a CPU-only machine)
JIT_MODES = ("auto", "true", "false")


def refuse_ignored(values: dict, config: type | None = None) -> None:
    """Refuse options given (not left at their default) that the chosen split or recipe would
    ignore (their ``used_by``, ``fine_tuning``), as they would be logged as if they had acted;
    ``config``: ``TrainConfig`` or a config extending it.

    Raises:
        ValueError: naming the option and what it needs.
    """
    opts = {o.name: o for o in options.options_of(config or TrainConfig)}
    given = {k: v for k, v in values.items() if k in opts and v not in (None, "") and v != opts[k].default}
    method = values.get("split") or opts["split"].default
    for name in sorted(n for n in given if opts[n].used_by is not None):
        if method not in opts[name].used_by:
            users = " or ".join(m for m in SPLIT_METHODS if m in opts[name].used_by)
            raise OptionError(
                f"{name}={given[name]} acts only with --split {users} (this run: --split "
                f"{method}); drop it or choose one of those splits"
            )
    if not values.get("fine_tune_layers"):
        for name in sorted(n for n in given if opts[n].fine_tuning):
            raise OptionError(
                f"{name}={given[name]} acts only with fine-tuning: give --fine-tune-layers N "
                "(N > 0) too, or drop it"
            )


def parse_epochs(text: str | tuple) -> tuple[int, ...]:
    """``"10,20,30"`` -> ``(10, 20, 30)``; empty -> ``()`` (the default milestones)."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise OptionError(f"eval_epochs={text!r}; give comma-separated epochs, e.g. 10,20,30") from None


@dataclass(frozen=True)
class TrainConfig:
    """One training run, composed of its model, its recipe beyond the paper's (augmentation,
    fine-tuning, early stopping) and its split; the paper's values are the defaults.

    Build it from option names with ``TrainConfig.of(arch="resnet50", split="subject", ...)``;
    change it with ``config.replace(...)`` (fields of the parts are routed to them).
    """

    data_dir: str = option(
        "",
        "Data folder; empty = the embedded synthetic dataset.",
        bookkeeping=True,  # the dataset's identity is its fingerprint, flagged when it differs
    )
    model: ModelConfig = part(ModelConfig)
    optimizer: str = option(
        "adam",
        "Optimizer (the paper compares adam and rmsprop).",
        choices=tuple(OPTIMIZERS),
        set_by=("search",),
    )
    epochs: int = option(100, "Epochs to train (the paper's longest setting).")
    eval_epochs: tuple[int, ...] = option(
        (),
        "Milestones evaluated on test, e.g. 10,20,30 (default: the paper's <= epochs, and the last).",
        parse=parse_epochs,
        bookkeeping=True,
    )
    lr: float = option(1e-4, "Initial learning rate (exponential decay).")
    batch_size: int = option(32, "Images per training batch.")
    decay_steps: int = option(900, "Steps over which the learning rate decays by --decay-rate.")
    decay_rate: float = option(0.95, "Learning rate = lr * decay_rate ** (step / decay_steps).")
    class_weight: bool = option(False, "Weight classes inversely to their training frequency.")
    recipe: RecipeConfig = part(RecipeConfig)
    split: SplitConfig = part(SplitConfig, protocol=True)
    seed: int = option(
        42,
        "One seed for the split, the batch order, the head's initial weights, the augmentation draws, "
        "the frozen bases kept across trainings and a search's sampler.",
        protocol=True,  # it draws the split: another seed is another draw of the same configuration
    )
    strict: bool = option(False, "Fail on any unreadable or truncated image.", bookkeeping=True)
    feature_cache: bool = option(
        True,
        "Train the head on the frozen base's outputs, computed once per image and cached (the same "
        "model as training through the base, far faster); off: every epoch runs through the frozen "
        "base end to end (the benchmark baseline).",
        cli="no_feature_cache",
        invert=True,
        bookkeeping=True,  # an exact shortcut: the same model
    )
    precision: str = option(
        "auto",
        "Keras dtype policy; auto = mixed_bfloat16 on a GPU with bfloat16, else float32.",
        choices=PRECISIONS,
        bookkeeping=True,  # the device's dtype policy: so a CPU image run and a GPU CV still line up
    )
    jit: str = option(
        "auto",
        "XLA compilation (jit_compile); auto = Keras' default (off on a CPU-only machine); "
        "--jit alone = true.",
        choices=JIT_MODES,
        bare="true",
        bookkeeping=True,
    )
    compiled_epoch: bool = option(
        True,
        "Train the head on cached features a whole epoch per compiled call where it applies (the "
        "feature cache before any fine-tuning, --augment none or dihedral, TensorFlow or JAX with XLA): "
        "the features (with dihedral augmentation or TTA: all 8 variants') are held in device memory "
        "and the model is the same; off: one train_on_batch call per batch.",
        cli="no_compiled_epoch",
        invert=True,
        bookkeeping=True,  # an exact shortcut, as the feature cache
    )
    system_metrics: bool = option(
        False,
        "Log MLflow's system metrics with the run (CPU, memory, disk, network; GPU utilisation and "
        "memory through nvidia-ml-py when a GPU is present): was a slow run bound by the GPU or the host?",
        bookkeeping=True,
    )
    checkpoint_minutes: float = option(
        10.0,
        "Save a checkpoint into the run once this many minutes of training have passed since the last "
        "one (0: not by time); also on SIGTERM. leukml train --resume RUN_ID continues a failed run "
        "from its last one.",
        bookkeeping=True,  # when the run saved itself, not what it trained
    )
    checkpoint_every: int = option(
        0,
        "Also save a checkpoint every N epochs (0: only by --checkpoint-minutes); both 0: never.",
        bookkeeping=True,
    )

    def __post_init__(self) -> None:
        if self.split.seed != self.seed:  # the split draws with the run's one seed
            object.__setattr__(self, "split", dataclasses.replace(self.split, seed=self.seed))
        if self.optimizer not in OPTIMIZERS:
            raise OptionError(f"optimizer={self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.epochs < 1:
            raise OptionError(f"epochs={self.epochs}; use at least 1")
        bad = [e for e in self.eval_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise LeukmlError(f"eval_epochs {bad} outside 1..epochs ({self.epochs})")
        for name, allowed in (("precision", PRECISIONS), ("jit", JIT_MODES)):
            if getattr(self, name) not in allowed:
                raise OptionError(f"{name}={getattr(self, name)!r}; choose one of: {', '.join(allowed)}")
        if self.checkpoint_every < 0:
            raise OptionError(
                f"checkpoint_every={self.checkpoint_every}; use 0 (never) or a number of epochs"
            )
        if not self.checkpoint_minutes >= 0:
            raise OptionError(
                f"checkpoint_minutes={self.checkpoint_minutes}; use 0 (not by time) or a number of minutes"
            )
        for name in ("lr", "batch_size", "decay_steps", "decay_rate"):
            if not getattr(self, name) > 0:  # NaN too
                raise OptionError(f"{name}={getattr(self, name)}; use a positive value")
        self.recipe.check_run(self.epochs, self.split.val_fraction)

    @classmethod
    def of(cls, **values) -> TrainConfig:
        """A config from option names (``arch``, ``split``, ``val_fraction``, ``no_feature_cache``, ...);
        the ones not given take their defaults."""
        return options.build(cls, values)

    def replace(self, **fields) -> TrainConfig:
        """This config with some fields changed (``arch``, ``lr``, ``method``, ...)."""
        return options.replace(self, **fields)

    @property
    def milestones(self) -> tuple[int, ...]:
        """Epochs evaluated on the test split: the given or paper's ones <= epochs, and the last."""
        chosen = self.eval_epochs or tuple(m for m in paper.EPOCHS if m <= self.epochs)
        return tuple(sorted(set(chosen) | {self.epochs}))

    @property
    def requests_validation(self) -> bool:
        """A validation split is asked for: a request only. Whether a run selected on test is a
        fact of the split actually made, ``Split.selection_on_test``; ``split_records`` refuses a
        requested validation split that comes out empty, so the two agree for a run that trains."""
        return self.split.val_fraction > 0

    @property
    def uses_feature_cache(self) -> bool:
        """Whether the head trains on cached base features (until fine-tuning, if any): asked for,
        and possible (not under ``full`` augmentation, which trains end to end)."""
        return self.feature_cache and self.recipe.feature_cache_possible

    @property
    def fine_tune_epoch(self) -> int | None:
        """The first epoch that fine-tunes the base's top layers, or None (a frozen base throughout)."""
        return self.recipe.fine_tune_epoch(self.epochs)

    @property
    def resolved_precision(self) -> str:
        """The Keras dtype policy the run uses: ``precision``, with ``auto`` decided by the device."""
        if self.precision != "auto":
            return self.precision
        from leukml.training.runtime import auto_precision  # loads Keras: not when the CLI only reads options

        return auto_precision()

    @property
    def jit_compile(self) -> bool | str:
        """``compile(jit_compile=...)``: True, False, or ``"auto"`` (Keras' default)."""
        return {"true": True, "false": False}.get(self.jit, "auto")

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """The config a run logged as ``config.json`` (``as_dict``), to run it again or continue it;
        options it predates take their defaults."""
        values = {}
        for o in options.options_of(cls):
            if o.param in params:
                values[o.name] = (not params[o.param]) if o.invert else params[o.param]
        return cls.of(**values)

    def as_dict(self) -> dict:
        """Every option its run reads, flat and resolved (milestones, precision, the first fine-tuning
        epoch; of the split options only those of its split): the run's params and config.json."""
        out = options.flat_values(self)
        for o in options.options_of(type(self)):  # a run logs only the split options its split reads
            if o.used_by is not None and self.split.method not in o.used_by:
                del out[o.param]
        out["eval_epochs"] = ",".join(map(str, self.milestones))
        if self.fine_tune_epoch is not None:
            out["fine_tune_from"] = self.fine_tune_epoch
        out["precision"] = self.resolved_precision
        return out
