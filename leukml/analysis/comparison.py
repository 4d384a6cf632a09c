"""One configuration under several evaluation protocols: runs grouped, their numbers side by side.

A run's protocol is its ``split`` param: ``image`` (the paper's random split by image: cells of one
patient land on both sides), ``subject``, ``official``, ``fold`` or ``kfold``. The fold runs of a
cross-validation (tag ``cv_fold``, nested under their CV parent by ``mlflow.parentRunId``) make one
entry per parent, "cv, K folds (kfold)" or "cv, official folds (fold)": the mean ± std over its
folds, each fold at its last milestone (population std, a NaN fold left out, as the CV parent's
``cv_std_*``).

Runs are one *configuration* when their training options (the params ``leukml train`` logs from
its options) agree on everything except the split's own params (``SPLIT_PARAMS``) and those that
say where or how a run was computed, not what it trained (``BOOKKEEPING_PARAMS``): the
``CONFIGURATION_PARAMS``, read from the options' definitions (``option(protocol=...,
bookkeeping=...)``). Any other training option, present or future, tells configurations apart; a
param that is no training option (one MLflow logged for a pyfunc, one ``mlflow run`` logged for its
entry point) never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leukml.analysis.page import Table, fmt, signed
from leukml.analysis.records import RunRecord
from leukml.analysis.uncertainty import Interval, independent_difference
from leukml.common import options
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError, OptionError
from leukml.reference import paper
from leukml.training.config import TrainConfig

# the protocol's params: the split's own options and the seed that draws it (``option(protocol=True)``)
SPLIT_PARAMS = options.params_with(TrainConfig, "protocol")
# where or how a run was computed, not what it trained (``option(bookkeeping=True)``)
BOOKKEEPING_PARAMS = options.params_with(TrainConfig, "bookkeeping")


def configuration_params(config: type = TrainConfig) -> frozenset[str]:
    """The params that tell configurations apart: those a training of ``config`` logs from its
    options (``TrainConfig.as_dict``'s keys) but the protocol's and the bookkeeping ones."""
    return frozenset(o.param for o in options.options_of(config) if not (o.protocol or o.bookkeeping))


CONFIGURATION_PARAMS = configuration_params()
SPLIT_ORDER = ("image", "subject", "official", "fold", "kfold")
REFERENCE = "image"  # the gap is measured to the paper's protocol
COMPARED = (
    ("test_accuracy", "Accuracy"),
    ("test_f1_weighted", "Weighted F1 (challenge)"),
    ("test_balanced_accuracy", "Balanced acc."),
    ("test_sensitivity", "Sensitivity (ALL)"),
    ("test_specificity", "Specificity (hem)"),
    ("test_auc", "AUC"),
)
Config = tuple[tuple[str, str], ...]


def describe_split(run: RunRecord) -> str:
    fold = run.cv_fold
    return f"{run.split_protocol} split" + (f", cv fold {fold}" if fold is not None else "")


def gap(value: float | None, reference: float | None) -> float | None:
    """The gap to the reference protocol (``REFERENCE``, the paper's image split): a protocol's
    value minus the reference's, None when either is missing. The one definition: the report's
    tables, its summary and ``leukml protocols``' printout all read it."""
    return None if value is None or reference is None else value - reference


def gap_text(value: float | None, reference: float | None) -> str:
    """``"−0.2300 vs image"``, or "" when there is no gap to show."""
    difference = gap(value, reference)
    return "" if difference is None else f"{signed(difference)} vs {REFERENCE}"


def at_last_milestone(run: RunRecord, metric: str) -> float | None:
    """The metric at the run's last milestone; None when not logged (an older run) or NaN."""
    epochs = run.milestones
    value = run.curves.get(metric, {}).get(epochs[-1]) if epochs else None
    return None if value is None or math.isnan(value) else value


def interval_at_last_milestone(run: RunRecord, metric: str) -> Interval | None:
    """The run's logged 95% interval of ``metric`` at its last milestone, or None (not logged:
    an older run; undefined: NaN)."""
    low, high = at_last_milestone(run, f"{metric}_ci_low"), at_last_milestone(run, f"{metric}_ci_high")
    return None if low is None or high is None else Interval(low, high)


def with_interval(value: float | None, interval: Interval | None) -> str:
    """``0.6500 [0.52, 0.78]``; the value alone (``fmt``) without an interval."""
    return fmt(value) + (f" {interval}" if value is not None and interval is not None else "")


def configuration(run: RunRecord) -> Config:
    """The run's training options but the split's and the bookkeeping ones, sorted."""
    return tuple(sorted((k, v) for k, v in run.params.items() if k in CONFIGURATION_PARAMS))


@dataclass
class Entry:
    """One configuration under one protocol: one run, or the fold runs of one CV parent."""

    config: Config
    split: str
    runs: list[RunRecord]
    parent: str | None = None  # the CV parent's run id

    @property
    def protocol(self) -> str:
        if self.parent is None:
            return self.split
        if self.split == "fold":
            return "cv, official folds (fold)"
        return f"cv, {self.declared_folds} folds ({self.split})"

    @property
    def declared_folds(self) -> int:
        folds = self.runs[0].params.get("folds", "") if self.split == "kfold" else ""
        return int(folds) if folds.isdigit() else len(self.runs)

    @property
    def epochs(self) -> str:
        return ", ".join(map(str, sorted({r.milestones[-1] for r in self.runs if r.milestones}))) or "–"

    @property
    def where(self) -> str:
        if self.parent is None:
            return f"run {self.runs[0].run_id[:8]}"
        n, k = len(self.runs), self.declared_folds
        return (f"{n} folds" if n == k else f"{n} of {k} folds") + f" of cv run {self.parent[:8]}"

    @property
    def sizes(self) -> str:
        """The training and test sides in cells and subjects (a CV: each fold's test side, summed),
        from the runs' tags; "?" where an older run did not log them."""
        if self.parent is None:
            run = self.runs[0]
            return (
                f"train {run.tag(schema.N_TRAIN)} cells / {run.tag(schema.N_TRAIN_SUBJECTS)} subjects, "
                f"test {run.tag(schema.N_TEST)} / {run.tag(schema.N_TEST_SUBJECTS)}"
            )
        tests = [r.tag(schema.N_TEST) for r in self.runs]
        total = sum(int(n) for n in tests) if all(n.isdigit() for n in tests) else "?"
        return f"test {total} cells over {len(self.runs)} folds"

    def stat(self, metric: str) -> tuple[float | None, float | None, int]:
        """(value or mean over folds, std over folds (None for one run), folds with a value)."""
        values = [v for r in self.runs if (v := at_last_milestone(r, metric)) is not None]
        if not values:
            return None, None, 0
        return float(np.mean(values)), float(np.std(values)) if self.parent else None, len(values)

    def interval(self, metric: str) -> Interval | None:
        """The 95% interval of ``metric`` for one run's entry (None for a CV entry: folds' intervals
        do not add up; its pooled interval is the CV parent's)."""
        return None if self.parent else interval_at_last_milestone(self.runs[0], metric)

    def confusion(self) -> np.ndarray | None:
        """``[[tn, fp], [fn, tp]]`` at the last milestone, summed over the folds; None if not logged."""
        counts = [[at_last_milestone(r, f"test_{k}") for k in ("tn", "fp", "fn", "tp")] for r in self.runs]
        if any(c is None for row in counts for c in row):
            return None
        return np.rint(np.sum(counts, axis=0)).astype(int).reshape(2, 2)

    def order(self) -> tuple:
        rank = SPLIT_ORDER.index(self.split) if self.split in SPLIT_ORDER else len(SPLIT_ORDER)
        return self.parent is not None, rank, self.protocol


def protocol_entries(runs: list[RunRecord]) -> list[Entry]:
    """One entry per (configuration, protocol): its newest run, or its newest CV parent's folds
    (the newest run of each fold index); ``runs`` come newest first."""
    folds: dict[str, dict[str, RunRecord]] = {}
    found: list[Entry] = []
    for run in runs:
        parent = run.parent_run_id
        if run.cv_fold is not None and parent:
            if parent not in folds:
                folds[parent] = {}
                found.append(Entry(configuration(run), run.split_protocol, [], parent))
            folds[parent].setdefault(run.cv_fold, run)
        else:
            found.append(Entry(configuration(run), run.split_protocol, [run]))
    entries: dict[tuple[Config, str], Entry] = {}
    for entry in found:
        if entry.parent:
            by_fold = folds[entry.parent]
            entry.runs = [by_fold[k] for k in sorted(by_fold, key=lambda k: (len(k), k))]
        entries.setdefault((entry.config, entry.protocol), entry)
    return list(entries.values())


def by_configuration(entries: list[Entry]) -> dict[Config, list[Entry]]:
    """Entries per configuration, the paper's architectures first, protocols in ``SPLIT_ORDER``."""
    grouped: dict[Config, list[Entry]] = {}
    for entry in entries:
        grouped.setdefault(entry.config, []).append(entry)

    def key(config: Config) -> tuple:
        params = dict(config)
        return paper.arch_order(params.get("arch", "?")), params.get("optimizer", "?"), config

    return {c: sorted(grouped[c], key=Entry.order) for c in sorted(grouped, key=key)}


def labels(configs: list[Config]) -> dict[Config, str]:
    """Each configuration's name: "arch + optimizer", and the params that tell it apart from the
    other configurations of the same arch and optimizer, if there are any."""
    out = {}
    for config in configs:
        params = dict(config)
        cell = params.get("arch", "?"), params.get("optimizer", "?")
        siblings = [
            dict(c) for c in configs if (dict(c).get("arch", "?"), dict(c).get("optimizer", "?")) == cell
        ]
        keys = sorted({k for s in siblings for k in s} - {"arch", "optimizer"})
        varying = [k for k in keys if len({s.get(k) for s in siblings}) > 1]
        extra = ", ".join(f"{k}={params.get(k, '–')}" for k in varying)
        out[config] = f"{cell[0]} + {cell[1]}" + (f" ({extra})" if extra else "")
    return out


def reference_entry(entries: list[Entry]) -> Entry | None:
    return next((e for e in entries if e.protocol == REFERENCE), None)


def cell(entry: Entry, metric: str, reference: Entry | None) -> str:
    mean, std, n = entry.stat(metric)
    text = with_interval(mean, entry.interval(metric)) + (f" ± {fmt(std)}" if std is not None else "")
    if entry.parent and 0 < n < len(entry.runs):
        text += f" ({n} folds)"
    theirs = reference.stat(metric)[0] if reference is not None and reference is not entry else None
    if gap(mean, theirs) is not None:
        text += f"\n{gap_text(mean, theirs)}"
        if (interval := gap_interval(entry, reference, metric)) is not None:
            text += f" {interval}"
    return text


def gap_interval(entry: Entry, reference: Entry, metric: str) -> Interval | None:
    """The 95% interval of ``entry``'s gap to ``reference`` on ``metric`` (two test sets:
    ``uncertainty.independent_difference``), or None without both runs' intervals."""
    mine, theirs = entry.interval(metric), reference.interval(metric)
    a, b = entry.stat(metric)[0], reference.stat(metric)[0]
    if mine is None or theirs is None or a is None or b is None:
        return None
    return independent_difference(a, mine, b, theirs)


def protocol_table(label: str, entries: list[Entry]) -> Table:
    """Rows: the configuration's protocols; columns: ``COMPARED`` at the last milestone, each with
    its gap to the image split."""
    reference = reference_entry(entries)
    rows = [
        [f"{e.protocol}\n{e.where}\n{e.sizes}", e.epochs, *(cell(e, m, reference) for m, _ in COMPARED)]
        for e in entries
    ]
    header = ["Protocol", "Epoch", *(name for _, name in COMPARED)]
    return Table(f"{label}: test metrics at the last milestone, per protocol", header, rows)


def best(grouped: dict[Config, list[Entry]]) -> tuple[Config, str] | None:
    """The configuration with the highest test accuracy at its last milestone under the image
    protocol, else under the first protocol present (in ``Entry.order``); and that protocol."""
    present = sorted((e for es in grouped.values() for e in es), key=Entry.order)
    if not present:
        return None
    protocol = REFERENCE if any(e.protocol == REFERENCE for e in present) else present[0].protocol
    scored = [(e.stat("test_accuracy")[0], e.config) for e in present if e.protocol == protocol]
    top = max(scored, key=lambda s: -math.inf if s[0] is None else s[0])
    return top[1], protocol


def overlapping_best(grouped: dict[Config, list[Entry]], chosen: Config, protocol: str) -> list[Config]:
    """The other configurations under ``protocol`` whose test-accuracy interval overlaps the best
    one's (``chosen``): on this test set they are not distinguishable from it."""
    under = {c: e for c, es in grouped.items() for e in es if e.protocol == protocol}
    mine = under[chosen].interval("test_accuracy") if chosen in under else None
    if mine is None:
        return []
    return [
        c
        for c, e in under.items()
        if c != chosen and (theirs := e.interval("test_accuracy")) is not None and theirs.overlaps(mine)
    ]


# -- promotion: rank like with like ------------------------------------------------------------------
# the protocols by how faithfully their test set stands for unseen patients, most faithful first
FAITHFULNESS = ("official", "subject", "kfold", "fold", "image")
MIXED = "mixed"  # rank across protocols and test sets (asked for explicitly)
PROTOCOL_CHOICES = ("auto", *FAITHFULNESS, MIXED)


@dataclass(frozen=True)
class Candidate:
    """A run promote may choose, as plain data."""

    run_id: str
    protocol: str
    test_set: str
    value: float


@dataclass(frozen=True)
class Ranking:
    """The runs ranked, best first, and what they have in common."""

    protocol: str  # one of FAITHFULNESS, or MIXED
    test_set: str  # the one test set, or MIXED
    runs: list[Candidate]
    chosen_by: str  # how the protocol was chosen, for a person


def rank_like_with_like(candidates: list[Candidate], protocol: str = "auto") -> Ranking:
    """The candidates of one protocol and one test set, best value first. ``auto``: the most
    faithful protocol present (``FAITHFULNESS``); ``mixed``: every candidate, whatever its protocol.

    Raises:
        ValueError: no candidate of the asked protocol, or the protocol's candidates were tested on
            different test sets (different data, seeds or folds): their values do not compare.
    """
    if protocol not in PROTOCOL_CHOICES:
        raise OptionError(f"protocol={protocol!r}; choose one of: {', '.join(PROTOCOL_CHOICES)}")
    ranked = sorted(candidates, key=lambda c: -c.value)
    if protocol == MIXED:
        return Ranking(MIXED, MIXED, ranked, "asked: every protocol and test set, not like with like")
    present = [p for p in FAITHFULNESS if any(c.protocol == p for c in ranked)]
    if protocol == "auto":
        if not present:
            raise LeukmlError("no candidate run names its split protocol; pass --protocol mixed")
        protocol, how = present[0], f"the most faithful protocol present ({', '.join(present)})"
    elif protocol not in present:
        raise LeukmlError(
            f"--protocol {protocol}: no matching run was trained under it (present: "
            f"{', '.join(present) or 'none'}); choose one of those"
        )
    else:
        how = "asked"
    mine = [c for c in ranked if c.protocol == protocol]
    sets = list(dict.fromkeys(c.test_set for c in mine))
    if len(sets) > 1:
        raise LeukmlError(
            f"the {len(mine)} {protocol}-protocol runs were tested on {len(sets)} different test sets "
            "(other data, seeds, test fractions or folds), so their numbers do not compare: choose one "
            "search with --parent-run or --study-name, another --protocol, or --protocol mixed to rank "
            "them anyway"
        )
    return Ranking(protocol, sets[0], mine, how)
