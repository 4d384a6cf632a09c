"""Data discovery: find labelled cell images in the C-NMC layouts, parse subjects, skip bad files."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukml import CLASS_NAMES
from leukml.common import runschema as schema
from leukml.common.cachedir import cache_path, write_json_atomic
from leukml.common.console import Progress, silent
from leukml.common.errors import LeukmlError
from leukml.data.filehash import HASH_THREADS, content_digests, hashed_reader
from leukml.data.images import ImageError, check_image, is_image_name

LAYOUTS_HELP = (
    "expected one of: the C-NMC training layout .../fold_<k>/{all,hem}/*.bmp; a folder of <n>.bmp "
    "with a labels CSV (header Patient_ID,new_names,labels) beside or inside it; or {all,hem}/ "
    "class folders (BMP, PNG, JPEG or TIFF)"
)
# what --split official needs (data.splits): the C-NMC release's labelled preliminary test set
PRELIM_HELP = (
    "the labelled preliminary test set of the C-NMC release (validation_data/"
    "C-NMC_test_prelim_phase_data/*.bmp with C-NMC_test_prelim_phase_data_labels.csv, header "
    "Patient_ID,new_names,labels)"
)
CSV_HEADER = ("patient_id", "new_names", "labels")
_FOLD_RE = re.compile(r"^fold_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    """One labelled image. ``label`` 1 = ALL (malignant), 0 = hem (normal); ``digest`` is the
    SHA-256 of the file's bytes (``filehash``); ``listed``: labelled by a labels CSV (C-NMC's
    labelled preliminary test set), its subject from the CSV's ``Patient_ID``."""

    relpath: str
    label: int
    subject: str | None
    fold: int | None
    size_bytes: int
    digest: str = ""
    listed: bool = False


@dataclass(frozen=True)
class Skipped:
    """A file leukml does not use; ``kind`` groups the reasons (``unlabelled``, ``broken link``, ...)."""

    path: str
    reason: str
    kind: str = "unusable image"


@dataclass(frozen=True)
class Dataset:
    """What leukml sees under ``root``: usable records (sorted by path) and skipped files."""

    root: Path
    records: tuple[Record, ...]
    skipped: tuple[Skipped, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def paths(self) -> list[Path]:
        return [self.root / r.relpath for r in self.records]


def parse_subject(name: str) -> str | None:
    """Subject id of a C-NMC file name: ``UID_h3_2_1_hem.bmp`` -> ``H3``; None if not that scheme."""
    parts = Path(name).stem.split("_")
    if len(parts) >= 2 and parts[0].upper() == "UID" and parts[1]:
        return parts[1].upper()
    return None


def fingerprint(records: Iterable[Record]) -> str:
    """Hash over the sorted relative paths, content digests, labels and subjects: equal
    fingerprints mean the same files with the same bytes and labels."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.relpath):
        if not r.digest:
            raise ValueError(f"{r.relpath}: a record without a content digest cannot be fingerprinted")
        h.update(f"{r.relpath}\t{r.digest}\t{r.label}\t{r.subject}\n".encode())
    return h.hexdigest()[:16]


def _csv_header(path: Path) -> tuple[str, ...]:
    """The first row of a CSV file, as written (empty when unreadable)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return tuple(c.strip() for c in next(csv.reader(fh), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()


def _is_labels_csv(path: Path) -> bool:
    return tuple(c.lower() for c in _csv_header(path)) == CSV_HEADER


def _unlabelled_reason(root: Path, path: Path, other_csvs: list[Path]) -> str:
    """Why a file has no label, naming a CSV beside it (or one folder up) that is not a labels CSV:
    the likely reason is its header."""
    reason = "unlabelled: not under an all/ or hem/ folder nor in a labels CSV"
    near = [c for c in other_csvs if c.parent in (path.parent, path.parent.parent)]
    if not near:
        return reason
    header = ",".join(_csv_header(near[0])) or "none"
    return (
        f"{reason}; {near[0].relative_to(root)} is not read as one: its header is {header!r}, "
        "expected Patient_ID,new_names,labels"
    )


def _link_problem(root: Path, path: Path) -> Skipped | None:
    """Why a file cannot be opened (a broken or looping symbolic link, no permission), or None."""
    rel = path.relative_to(root).as_posix()
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skipped(rel, "symbolic link loop", "link loop")
        if path.is_symlink():
            return Skipped(rel, f"broken symbolic link to {os.readlink(path)}", "broken link")
        if exc.errno == errno.ENOENT:
            return Skipped(rel, "missing", "missing")
        return Skipped(rel, f"unreadable ({exc.strerror or exc})", "unreadable")
    return None


def _real_dirs(root: Path) -> set[str]:
    """The folders under ``root`` reachable without following a link."""
    return {os.path.realpath(d) for d, _, _ in os.walk(root)}


def _walk(root: Path) -> tuple[list[Path], list[Path], list[Skipped]]:
    """Image and CSV files under ``root``, following linked folders: each real folder is read once,
    at its own place when it has one under ``root`` (else at the first link to it), so link loops
    end and a linked copy is not counted twice. Broken and looping file links are skipped."""
    images, csvs, skipped = [], [], []
    real, seen = _real_dirs(root), set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)
        linked = here != os.path.abspath(dirpath)
        if here in seen or (linked and here in real):
            dirnames[:] = []
            continue
        seen.add(here)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_image_name(path):
                problem = _link_problem(root, path)
                if problem is None:
                    images.append(path)
                else:
                    skipped.append(problem)
            elif name.lower().endswith(".csv") and not name.startswith("."):
                csvs.append(path)
    return images, csvs, skipped


def _csv_image_dir(csv_path: Path, names: list[str]) -> Path:
    candidates = [csv_path.parent] + sorted(p for p in csv_path.parent.iterdir() if p.is_dir())
    return max(candidates, key=lambda d: sum((d / n).is_file() for n in names[:50]))


def _csv_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        return [
            {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)
        ]


def _from_csvs(root: Path, csv_paths: list[Path]) -> tuple[list[Record], list[Skipped], set[Path]]:
    """Records of every labels CSV. A file listed again (a backup copy of the CSV) counts once
    when the rows agree; rows that disagree about its label are an error naming both files."""
    records, skipped, claimed = [], [], set()
    listed: dict[str, tuple[str, Path]] = {}
    for csv_path in csv_paths:
        rows = _csv_rows(csv_path)
        image_dir = _csv_image_dir(csv_path, [r["new_names"] for r in rows])
        for row in rows:
            path = image_dir / row["new_names"]
            rel = path.relative_to(root).as_posix()
            if rel in listed:
                label, first = listed[rel]
                if label != row["labels"]:
                    raise LeukmlError(
                        f"{rel} is labelled {label!r} in {first.relative_to(root)} but {row['labels']!r} "
                        f"in {csv_path.relative_to(root)}; remove the wrong labels CSV or correct the row"
                    )
                continue
            listed[rel] = (row["labels"], csv_path)
            claimed.add(path)
            problem = _link_problem(root, path)
            if row["labels"] not in ("0", "1"):
                reason = f"label {row['labels']!r} in {csv_path.name} is not 0 or 1"
                skipped.append(Skipped(rel, reason, "bad label"))
            elif problem is not None and problem.kind == "missing":
                skipped.append(Skipped(rel, f"listed in {csv_path.name} but missing", "missing"))
            elif problem is not None:
                skipped.append(problem)
            else:
                subject = parse_subject(row["patient_id"])
                records.append(
                    Record(rel, int(row["labels"]), subject, None, path.stat().st_size, listed=True)
                )
    return records, skipped, claimed


def _from_folders(root: Path, path: Path, other_csvs: list[Path]) -> Record | Skipped:
    rel = path.relative_to(root)
    label, fold = None, None
    for part in reversed(rel.parts[:-1]):
        if label is None and part.lower() in CLASS_NAMES:
            label = CLASS_NAMES.index(part.lower())
        match = _FOLD_RE.match(part)
        if fold is None and match:
            fold = int(match.group(1))
    if label is None:
        return Skipped(rel.as_posix(), _unlabelled_reason(root, path, other_csvs), "unlabelled")
    named = path.stem.rsplit("_", 1)[-1].lower()  # C-NMC names end in _all or _hem
    if "_" in path.stem and named in CLASS_NAMES and CLASS_NAMES.index(named) != label:
        reason = (
            f"its name says {named} but it is under a {CLASS_NAMES[label]}/ folder; "
            "move it to the right folder (or rename it) to use it"
        )
        return Skipped(rel.as_posix(), reason, "name and folder disagree")
    return Record(rel.as_posix(), label, parse_subject(path.name), fold, path.stat().st_size)


def _verdict_of(data: bytes) -> str | None:
    """Why an image file whose bytes are ``data`` cannot be used, or None."""
    try:
        check_image(data)
    except ImageError as exc:
        return str(exc)
    return None


def _with_digests(
    root: Path, candidates: list[Record], progress: Progress
) -> tuple[list[Record], list[Skipped], dict[str, str | None]]:
    """The candidates with their digests, the unreadable ones, and the scan verdicts of the files
    that were read to be hashed (decoded from the very bytes hashed)."""
    verdicts: dict[str, str | None] = {}
    digests, errors = content_digests(
        root,
        [r.relpath for r in candidates],
        lambda rel, data: verdicts.update({rel: _verdict_of(data)}),
        progress,
        "hashing and checking data files",
    )
    records = [dataclasses.replace(r, digest=digests[r.relpath]) for r in candidates if r.relpath in digests]
    return records, [Skipped(rel, reason, "unreadable") for rel, reason in errors.items()], verdicts


def _verdict(read: Callable[[str, str], bytes], record: Record) -> str | None:
    """Why the file cannot be used (decoded from bytes checked to be the hashed ones), or None."""
    try:
        return _verdict_of(read(record.relpath, record.digest))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _check_images(
    root: Path, records: list[Record], known: dict[str, str | None], progress: Progress
) -> dict[str, str]:
    """Decode every candidate once per distinct content; the verdicts are cached by fingerprint.
    ``known``: the verdicts of the files read while hashing them; the others are read here."""
    cached = cache_path("scan", f"{fingerprint(records)}.json")
    if cached.is_file():
        return json.loads(cached.read_text())
    todo = [r for r in records if r.relpath not in known]
    pool = ThreadPoolExecutor(HASH_THREADS)  # hashing and decoding release the GIL
    try:
        read = hashed_reader(root)
        found = dict(known)
        checking = progress("checking images", len(todo), "img") if todo else contextlib.nullcontext(None)
        with checking as advance:
            for r, why in zip(todo, pool.map(lambda r: _verdict(read, r), todo), strict=True):
                found[r.relpath] = why
                advance(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    bad = {r.relpath: found[r.relpath] for r in records if found[r.relpath] is not None}
    write_json_atomic(cached, bad)
    return bad


def discover(data_dir: str | os.PathLike, strict: bool = False, progress: Progress = silent) -> Dataset:
    """Find every labelled image under ``data_dir``, at any depth; ``progress`` hears of hashing
    and checking them.

    Raises:
        FileNotFoundError: ``data_dir`` is missing.
        ValueError: no usable images, a single class, labels CSVs that disagree, or (``strict``)
            any unusable image.
    """
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data dir {root} does not exist or is not a folder; {LAYOUTS_HELP}")
    images, csvs, skipped = _walk(root)
    labels_csvs = [c for c in csvs if _is_labels_csv(c)]
    candidates, csv_skipped, claimed = _from_csvs(root, labels_csvs)
    skipped += csv_skipped
    other_csvs = [c for c in csvs if c not in labels_csvs]
    for path in images:
        if path not in claimed:
            item = _from_folders(root, path, other_csvs)
            (candidates if isinstance(item, Record) else skipped).append(item)
    candidates, unreadable, verdicts = _with_digests(root, candidates, progress)
    skipped += unreadable
    bad = _check_images(root, candidates, verdicts, progress) if candidates else {}
    if strict and bad:
        first = next(iter(bad.items()))
        raise LeukmlError(
            f"{len(bad)} unusable image(s) under {root} with --strict, e.g. "
            f"{first[0]}: {first[1]}; fix or remove them, or drop --strict"
        )
    skipped += [Skipped(p, reason) for p, reason in bad.items()]
    skipped.sort(key=lambda s: s.path)
    records = sorted((r for r in candidates if r.relpath not in bad), key=lambda r: r.relpath)
    _check_classes(root, records, skipped)
    return Dataset(root, tuple(records), tuple(skipped), fingerprint(records))


def skip_counts(skipped: Sequence[Skipped]) -> dict[str, int]:
    """How many files were skipped for each kind of reason, most first."""
    return dict(Counter(s.kind for s in skipped).most_common())


def skip_tags(dataset: Dataset) -> dict[str, str]:
    """A run's tags for what its data left out: ``skipped`` (all) and ``skipped_<kind>`` per kind
    (``skipped_bad_label``, ``skipped_name_and_folder_disagree``, ...)."""
    counts = skip_counts(dataset.skipped)
    return {schema.SKIPPED: str(len(dataset.skipped))} | {
        schema.skipped_tag(re.sub(r"\W+", "_", kind)): str(n) for kind, n in counts.items()
    }


def skip_line(dataset: Dataset, examples: int = 3) -> str | None:
    """One line for a training's console: what was left out per reason, the first example of
    each, and where to see the rest; None when nothing was."""
    if not dataset.skipped:
        return None
    counts = skip_counts(dataset.skipped)
    firsts = [next(s for s in dataset.skipped if s.kind == kind) for kind in counts][:examples]
    return (
        f"skipped {len(dataset.skipped)} of {len(dataset.skipped) + len(dataset)} files under "
        f"{dataset.root}: "
        + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        + "; e.g. "
        + "; ".join(f"{s.path}: {s.reason}" for s in firsts)
        + f"; run `leukml inspect {dataset.root}` for the rest"
    )


def skip_summary(skipped: Sequence[Skipped], examples: int = 3) -> str:
    """``"5 skipped: 3 unlabelled, 2 broken link; e.g. a.bmp: ...; b.bmp: ..."``."""
    counts = Counter(s.kind for s in skipped)
    text = f"{len(skipped)} skipped: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return text + "; e.g. " + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:examples])


def _check_classes(root: Path, records: list[Record], skipped: list[Skipped]) -> None:
    if not records:
        found = f" ({skip_summary(skipped)})" if skipped else ""
        raise LeukmlError(f"found no usable labelled images under {root}{found}; {LAYOUTS_HELP}")
    present = {r.label for r in records}
    if len(present) < 2:
        only = CLASS_NAMES[present.pop()]
        raise LeukmlError(
            f"found only class {only!r} under {root}: both all and hem are needed; {LAYOUTS_HELP}"
        )
