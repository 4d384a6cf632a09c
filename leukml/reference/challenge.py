"""Published numbers on C-NMC 2019 to set beside ours: theirs, under their protocol, never ours.

The C-NMC 2019 challenge scored weighted F1 (F1 of both classes weighted by support) of models
trained on ``training_data``, on the labelled preliminary test set and on the final test set (its
labels kept by the organisers). The paper (Fata et al. 2023) reports accuracy on its own random
split by image instead. Values keep the precision their authors gave.
"""

from __future__ import annotations

from dataclasses import dataclass

from leukml.reference import paper

PRELIMINARY = "official: trained on training_data, tested on the preliminary test set"
FINAL = "official: trained on training_data, tested on the final test set"


@dataclass(frozen=True)
class Published:
    """One published number: who, what model or remark, under which protocol, which metric."""

    who: str
    what: str
    protocol: str
    metric: str
    value: str  # as published

    @property
    def number(self) -> float:
        return float(self.value)


CHALLENGE = (
    Published("Pan et al. 2019", "challenge winner", PRELIMINARY, "weighted F1", "0.925"),
    Published("Pan et al. 2019", "challenge winner", FINAL, "weighted F1", "0.9104"),
    Published("Prellberg & Kramer 2019", "", FINAL, "weighted F1", "0.8891"),
    Published("Mondal et al. 2021", "", PRELIMINARY, "weighted F1", "0.886"),
    Published("Marzahl et al.", "", PRELIMINARY, "weighted F1", "0.8764"),
)
CHALLENGE_BEST = CHALLENGE[0]

_ARCH, _OPT, _EPOCHS = paper.BEST
_WHAT = f"{_ARCH.upper()} + {_OPT.capitalize()}, {_EPOCHS} epochs (their best)"
PAPER_BEST_TEST = Published(
    "Fata et al. 2023 (the paper)",
    _WHAT,
    paper.PROTOCOL,
    "test accuracy",
    f"{paper.TEST_ACCURACY[(_ARCH, _OPT)][_EPOCHS]:.4f}",
)
PAPER = (
    PAPER_BEST_TEST,
    Published(
        PAPER_BEST_TEST.who,
        _WHAT,
        paper.PROTOCOL,
        "train accuracy",
        f"{paper.train_accuracy(_ARCH, _OPT, _EPOCHS):.4f}",
    ),
)
ALL = PAPER + CHALLENGE
