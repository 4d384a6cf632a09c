"""The report's opening: the summary and the protocols section, the leakage gap shown.

The summary names the best configuration and how it was chosen, and sets its test numbers under
each protocol beside the paper's best test accuracy and the C-NMC challenge's best weighted F1, each
labelled with its protocol. The protocols section gives every configuration's protocols side by side
(``leukml.analysis.comparison``), its confusion matrices, and the published numbers as theirs.
"""

from __future__ import annotations

import hashlib
import re

from leukml.analysis import plots
from leukml.analysis.comparison import (
    BOOKKEEPING_PARAMS,
    REFERENCE,
    SPLIT_PARAMS,
    Config,
    Entry,
    best,
    by_configuration,
    cell,
    gap_interval,
    gap_text,
    labels,
    overlapping_best,
    protocol_table,
    reference_entry,
)
from leukml.analysis.page import Block, Bullets, Gallery, Image, Section, Table, fmt
from leukml.reference import challenge

SPLIT_NOTES = {
    "image": "the paper's protocol: a random split by image; cells of one patient land on both sides, "
    "so the test set holds people the model trained on",
    "subject": "a subject-grouped split: each person on one side",
    "official": "the C-NMC 2019 challenge protocol: train on training_data, test on the labelled "
    "preliminary test set",
    "fold": "one official C-NMC fold held out",
    "kfold": "one of K subject-grouped, class-stratified folds held out",
}

CV_NOTES = {
    "fold": "each official C-NMC fold held out in turn",
    "kfold": "K subject-grouped, class-stratified folds, each held out in turn",
}


def summary_section(entries: list[Entry]) -> Section:
    """The best configuration, how it was chosen, and its test numbers under each protocol beside
    the paper's best test accuracy and the challenge's best weighted F1, each with its protocol."""
    grouped = by_configuration(entries)
    chosen = best(grouped)
    if chosen is None:
        return Section("Summary", ["No runs to summarise."], "summary")
    config, protocol = chosen
    name, mine = labels(list(grouped))[config], grouped[config]
    n = sum(e.protocol == protocol for es in grouped.values() for e in es)
    fallback = "" if protocol == REFERENCE else f"; no configuration was run under the {REFERENCE} protocol"
    blocks: list[Block] = [
        f"Best configuration: {name}, chosen as the highest test accuracy at its last milestone under "
        f"the {protocol} protocol, among the {n} configuration(s) run under it{fallback}."
    ]
    blocks += _overlap_note(grouped, config, protocol)
    reference = reference_entry(mine)
    gaps = [
        f"{e.protocol} {fmt(ours)} ({gap_text(ours, theirs)}"
        + (
            f", 95% interval {interval})"
            if (interval := gap_interval(e, reference, "test_accuracy"))
            else ")"
        )
        for e in mine
        if reference is not None
        and e is not reference
        and (ours := e.stat("test_accuracy")[0]) is not None
        and (theirs := reference.stat("test_accuracy")[0]) is not None
    ]
    if gaps:
        blocks.append(
            f"Its test accuracy: {REFERENCE} {fmt(reference.stat('test_accuracy')[0])}; {'; '.join(gaps)}. "
            f"The {REFERENCE} split puts cells of one patient on both sides, so its test set holds people "
            "the model trained on; the subject-grouped protocols test on people it has never seen."
        )
    rows = [
        [f"ours: {name}, epoch {e.epochs}", e.protocol]
        + [cell(e, m, reference) for m in ("test_accuracy", "test_f1_weighted")]
        for e in mine
    ]
    paper_best, challenge_best = challenge.PAPER_BEST_TEST, challenge.CHALLENGE_BEST
    rows.append([f"theirs: {paper_best.who}, {paper_best.what}", paper_best.protocol, paper_best.value, "–"])
    rows.append(
        [
            f"theirs: {challenge_best.who}, {challenge_best.what}",
            challenge_best.protocol,
            "–",
            challenge_best.value,
        ]
    )
    header = ["Who", "Protocol", "Test accuracy", "Weighted F1 (challenge metric)"]
    blocks.append(Table(f"{name} under each protocol, beside published numbers", header, rows))
    return Section("Summary", blocks, "summary")


OVERLAP_MARK = " ≈ best"  # a configuration whose interval overlaps the best one's


def _overlap_note(grouped: dict[Config, list[Entry]], chosen: Config, protocol: str) -> list[str]:
    """Which configurations the best one is not distinguishable from on its test set."""
    entry = next((e for e in grouped[chosen] if e.protocol == protocol), None)
    interval = entry.interval("test_accuracy") if entry is not None else None
    if interval is None:
        return []
    names = labels(list(grouped))
    close = [names[c] for c in overlapping_best(grouped, chosen, protocol)]
    text = f"Its test accuracy's 95% interval (a bootstrap over the test subjects): {interval}. "
    if close:
        return [
            text + f"The intervals of {', '.join(close)} overlap it (marked{OVERLAP_MARK} below): on "
            "this test set the best is not distinguishable from them."
        ]
    return [text + "No other configuration's interval under this protocol overlaps it."]


def protocols_section(entries: list[Entry]) -> Section:
    """Per configuration: its protocols side by side with the gap to the image split and its
    confusion matrices; then the published numbers, labelled with their protocol."""
    grouped = by_configuration(entries)
    names = labels(list(grouped))
    chosen = best(grouped)
    close = set(overlapping_best(grouped, *chosen)) if chosen else set()
    names = {c: n + (OVERLAP_MARK if c in close else "") for c, n in names.items()}
    blocks: list[Block] = [
        "Each configuration's test metrics at its last milestone under every protocol it was run "
        f"with, and the gap to the {REFERENCE} split (the paper's protocol). A configuration is the "
        f"runs whose params agree except on the split's ({', '.join(SPLIT_PARAMS)}) and on where or "
        f"how they ran ({', '.join(BOOKKEEPING_PARAMS)}). The fold runs of one cross-validation (tag "
        "cv_fold, one CV parent) are one entry: mean ± std (population) over its folds, each at its "
        "last milestone; a fold without a value is left out and the folds counted. – : not logged "
        "(an older run) or undefined (NaN). [low, high]: the 95% interval of a bootstrap over the "
        f"test subjects (docs: Protocols);{OVERLAP_MARK}: its interval overlaps the best configuration's.",
        Bullets([_protocol_note(e) for e in _distinct(grouped)]),
    ]
    taken: set[str] = set()
    for config, mine in grouped.items():
        blocks.append(protocol_table(names[config], mine))
        blocks += _dataset_notes(names[config], mine)
        blocks += _degenerate_notes(names[config], mine)
        images, lacking = _confusions(names[config], mine, taken)
        if images:
            blocks.append(Gallery(images))
        if lacking:
            blocks.append(f"{names[config]}: no confusion counts logged under {', '.join(lacking)}.")
    blocks.append(
        Table(
            "Published numbers: theirs, under their protocol (not ours)",
            ["Who (their numbers)", "Model", "Their protocol and test set", "Metric", "Value"],
            [[p.who, p.what, p.protocol, p.metric, p.value] for p in challenge.ALL],
        )
    )
    return Section("Protocols: the leakage gap", blocks)


def _distinct(grouped: dict[Config, list[Entry]]) -> list[Entry]:
    """One entry per protocol present, in protocol order."""
    present = sorted((e for es in grouped.values() for e in es), key=Entry.order)
    return list({e.protocol: e for e in reversed(present)}.values())[::-1]


def _protocol_note(entry: Entry) -> str:
    if entry.parent is None:
        return f"{entry.protocol}: {SPLIT_NOTES.get(entry.split, 'a split this report does not know')}"
    how = CV_NOTES.get(entry.split, f"each fold of the {entry.split} split held out in turn")
    return f"{entry.protocol}: cross-validation, {how}; mean ± std over the folds"


def _dataset_notes(name: str, entries: list[Entry]) -> list[str]:
    seen: dict[str, list[str]] = {}
    for entry in entries:
        for run in entry.runs:
            protocols = seen.setdefault(run.dataset_fingerprint, [])
            protocols += [] if entry.protocol in protocols else [entry.protocol]
    if len(seen) < 2:
        return []
    which = "; ".join(f"{fp} under {', '.join(ps)}" for fp, ps in sorted(seen.items()))
    return [
        f"{name}: its runs saw {len(seen)} different datasets ({which}): the gap mixes protocol and data."
    ]


def _degenerate_notes(name: str, entries: list[Entry]) -> list[str]:
    """A note per protocol whose runs predicted one class for every test image at a milestone
    (tag ``test_one_class_predicted``): their numbers describe a collapsed model, not a gap."""
    notes = []
    for entry in entries:
        hits = [r for r in entry.runs if r.one_class_predicted]
        if not hits:
            continue
        which = "; ".join(
            f"run {r.run_id[:8]} predicts {r.one_class_predicted.label} "
            f"at epoch(s) {', '.join(r.one_class_predicted.epochs) or '?'}"
            for r in hits
        )
        notes.append(
            f"{name}, {entry.protocol}: predicts one class for every test image ({which}): a "
            "collapsed model, its metrics only count the classes of the test split."
        )
    return notes


def _confusions(name: str, entries: list[Entry], taken: set[str]) -> tuple[list[Image], list[str]]:
    """Each protocol's confusion matrix at the last milestone (summed over CV folds), and the
    protocols whose runs logged no counts."""
    images, lacking = [], []
    for entry in entries:
        matrix = entry.confusion()
        if matrix is None:
            lacking.append(entry.protocol)
            continue
        what = f"{entry.protocol}, epoch {entry.epochs}"
        folds = f"summed over {len(entry.runs)} folds" if entry.parent else ""
        figure = plots.confusion_figure(matrix, "\n".join(filter(None, (name, what, folds))))
        what += f", {folds}" if folds else ""
        filename = _unique(f"confusion_{short_slug(name)}_{_slug(entry.protocol)}", taken)
        images.append(Image(filename, f"Confusion matrix, {name}: {what}", plots.png_bytes(figure)))
    return images, lacking


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


SLUG_CHARS = 40  # a file name stays far below any file system's 255 bytes, whatever the params


def short_slug(text: str) -> str:
    """A short, stable file-name part for any text: its slug cut to ``SLUG_CHARS`` and, when cut,
    8 hex characters of the text's SHA-256, so two long names that share a start still differ."""
    slug = _slug(text)
    if len(slug) <= SLUG_CHARS:
        return slug
    return f"{slug[:SLUG_CHARS].rstrip('-')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _unique(stem: str, taken: set[str]) -> str:
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name
